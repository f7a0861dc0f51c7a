"""The web dashboard: server-rendered pages over the same store and the API's own checks.

Every page acts as the server API token the person signed in with (``session.py``):
applications come through ``Call.app_for`` and the API's handlers, so a token restricted
to some applications sees exactly what the API would show it, and an application it may
not see is "not found", the same as one that does not exist. A page also needs the API
method it shows to be one the token may call (``PAGES``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode

import jinja2
import msgspec
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from pushtrack.api import auth, envelope, message_log, messages, scheduled
from pushtrack.api.context import Call, Context
from pushtrack.api.errors import AuthError, ForbiddenError, PushtrackError
from pushtrack.dashboard import session as sess
from pushtrack.dashboard.live import Live
from pushtrack.domain import platforms
from pushtrack.domain.platforms import Platform, name_of
from pushtrack.domain.timeutil import DAY_US, HOUR_US, parse_day, to_wire, window_start
from pushtrack.store.base import App, StoreUnavailableError, TokenInfo
from pushtrack.store.dashboard import FailureGroup
from pushtrack.store.stats import MessageSummary, Totals

log = logging.getLogger("pushtrack.dashboard")

HERE = Path(__file__).parent
STATIC = HERE / "static"
PER_PAGE = 25
TIMELINE_ROWS = 200
#: A chart is drawn per minute while a message's activity spans at most this long.
MINUTE_CHART_SPAN = 3 * HOUR_US
#: Buckets a chart is drawn up to now for (a message's activity so far, then quiet).
CHART_POINTS = 720
#: The counters the chart draws, in the order of its series.
CHART_SERIES = ("sends", "deliveries", "opens", "errors")
#: A message with more failures than this has them grouped after its page has shown.
INLINE_FAILURES = 10_000
#: Messages whose grouped failures are kept (all are dropped when it is full).
FAILURE_CACHE = 1000
#: Form bodies are small; anything larger is refused.
MAX_FORM_BYTES = 16 * 1024

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none';"
    " base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "cache-control": "no-store",
}
#: Platforms offered by the messages page's filter.
FILTER_PLATFORMS = (
    Platform.IOS,
    Platform.ANDROID,
    Platform.HUAWEI,
    Platform.AMAZON,
    Platform.CHROME,
    Platform.FIREFOX,
    Platform.SAFARI,
)


class NotFound(Exception):
    """An application, message or request the token may not see, or that does not exist."""


class BadForm(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def secured(response: Response) -> Response:
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
    return response


def _when(ts: int | None) -> str:
    return "" if ts is None else to_wire(ts)


def _rate(part: int, whole: int) -> str:
    return "–" if whole <= 0 else f"{100 * part / whole:.1f}%"


class Funnel(msgspec.Struct, frozen=True):
    sends: int
    deliveries: int
    confirmed: int
    opens: int
    errors: int

    @classmethod
    def of(cls, totals: list[Totals]) -> Funnel:
        return cls(
            sends=sum(t.sends for t in totals),
            deliveries=sum(t.deliveries for t in totals),
            confirmed=sum(t.confirmed for t in totals),
            opens=sum(t.opens for t in totals),
            errors=sum(t.errors for t in totals),
        )

    @property
    def delivery_rate(self) -> str:
        return _rate(self.deliveries, self.sends)

    @property
    def confirm_rate(self) -> str:
        return _rate(self.confirmed, self.deliveries)

    @property
    def open_rate(self) -> str:
        return _rate(self.opens, self.deliveries)

    @property
    def failure_rate(self) -> str:
        # of every delivery that ended or was sent: some fail before sending (an unknown
        # or unsubscribed device), so they are not among the sends
        return _rate(self.errors, max(self.sends, self.deliveries + self.errors))


class FailureRow(msgspec.Struct, frozen=True):
    """One group of a message's failures, with its share and its platform's rate."""

    reason: str
    failure_class: str | None
    platform: int
    count: int
    #: of all the message's failures
    share: str
    #: of the platform's deliveries that were sent or ended (as ``Funnel.failure_rate``)
    rate: str


def failure_rows(groups: list[FailureGroup], totals: list[Totals]) -> list[FailureRow]:
    """The grouped failures with their rates: each group's share of the failures, and
    of its platform's deliveries that were sent or ended (from the counters)."""
    # the counters' errors (the groups shown may be fewer than all), never fewer than shown
    whole = max(sum(g.count for g in groups), sum(t.errors for t in totals))
    by_platform = platform_funnels(totals)
    out = []
    for g in groups:
        funnel = by_platform.get(g.platform)
        ended = 0 if funnel is None else max(funnel.sends, funnel.deliveries + funnel.errors)
        out.append(
            FailureRow(
                reason=g.reason,
                failure_class=g.failure_class,
                platform=g.platform,
                count=g.count,
                share=_rate(g.count, whole),
                rate=_rate(g.count, max(ended, g.count)),
            )
        )
    return out


def platform_funnels(totals: list[Totals]) -> dict[int, Funnel]:
    """A message's funnel per platform, platforms in the order of their sends (most first)."""
    rows: dict[int, list[Totals]] = {}
    for t in totals:
        rows.setdefault(t.platform, []).append(t)
    funnels = {p: Funnel.of(ts) for p, ts in rows.items()}
    ordered = sorted(funnels.items(), key=lambda kv: (-kv[1].sends, -kv[1].errors, kv[0]))
    return dict(ordered)


class Viewer:
    """The signed-in person on one request: the session and the token it holds."""

    def __init__(self, session: sess.Session, token: TokenInfo) -> None:
        self.session = session
        self.token = token

    @property
    def csrf(self) -> str:
        return self.session.csrf


Handler = Callable[[Request, Viewer], Awaitable[Response]]


class Dashboard:
    def __init__(self, ctx: Context, api_app: Callable[[], Any] | None = None) -> None:
        self.ctx = ctx
        self._sessions: sess.Sessions | None = None
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["when"] = _when
        self.env.filters["platform"] = name_of
        self.env.globals["platforms"] = [(int(p), name_of(p)) for p in FILTER_PLATFORMS]
        self.live = Live(ctx, api_app)
        self._failures: dict[int, tuple[int, list[FailureGroup]]] = {}

    async def sessions(self) -> sess.Sessions:
        if self._sessions is None:
            secret = await self.ctx.store.dashboard.server_secret()
            self._sessions = sess.Sessions(sess.derive_key(secret))
        return self._sessions

    # -- rendering ------------------------------------------------------------------------

    def render(self, request: Request, name: str, status: int = 200, **values: Any) -> Response:
        values.setdefault("viewer", None)
        values.setdefault("app", None)
        values.setdefault("apps", [])
        values.setdefault("section", "")
        html = self.env.get_template(name).render(request=request, **values)
        return secured(HTMLResponse(html, status_code=status))

    def problem(
        self, request: Request, status: int, message: str, viewer: Viewer | None = None
    ) -> Response:
        return self.render(request, "problem.html", status=status, message=message, viewer=viewer)

    # -- who is signed in -----------------------------------------------------------------

    async def viewer(self, request: Request) -> Viewer | None:
        sessions = await self.sessions()
        found = sessions.open(request.cookies.get(sess.COOKIE))
        if found is None:
            return None
        try:
            token = await self.ctx.token(found.token)
            auth.check_method(token, "getMessageLog", server_method=True)
        except (AuthError, ForbiddenError):
            return None
        return Viewer(found, token)

    def page(self, handler: Handler, method: str | None = None) -> Callable[[Request], Any]:
        """A signed-in page: no session sends the person to sign in; a token that may not
        call ``method`` gets 403; unknown things are 404; a POST must carry the CSRF."""

        async def endpoint(request: Request) -> Response:
            try:
                if _has_nul(request):
                    raise BadForm("text must not contain NUL characters")
                viewer = await self.viewer(request)
                if viewer is None:
                    if request.method != "GET":
                        return self.problem(request, 403, "Sign in first.")
                    target = "/signin?" + urlencode({"next": request.url.path})
                    return secured(RedirectResponse(target, status_code=303))
                if method is not None:
                    try:
                        auth.check_method(viewer.token, method, server_method=True)
                    except ForbiddenError:
                        return self.problem(
                            request, 403, f"This token may not call {method}.", viewer
                        )
                if request.method == "POST":
                    try:
                        form = await read_form(request)
                    except BadForm:
                        form = {}  # not a form of this site: it carries no CSRF value
                    if not sess.same(form.get("csrf"), viewer.csrf):
                        return self.problem(
                            request,
                            403,
                            "The form was refused (missing or stale CSRF token).",
                            viewer,
                        )
                    request.state.form = form
                self.ctx.limiter.check(f"t{viewer.token.id}")
                return await handler(request, viewer)
            except NotFound:
                return self.problem(request, 404, "Not found.")
            except BadForm as exc:
                return self.problem(request, 400, exc.message)
            except PushtrackError as exc:
                return self.problem(request, 429 if exc.http_status == 429 else 400, exc.message)
            except StoreUnavailableError:
                return self.problem(request, 503, "The store is not answering; try again soon.")

        return endpoint

    async def app_of(self, request: Request, viewer: Viewer, method: str) -> tuple[Call, App]:
        call = Call(self.ctx, method, viewer.token)
        try:
            app = await call.app_for(request.path_params["app"])
        except PushtrackError:
            raise NotFound from None
        return call, app

    async def visible_apps(self, viewer: Viewer) -> list[App]:
        apps = await self.ctx.store.list_apps(viewer.token.account)
        allowed = viewer.token.apps
        return [a for a in apps if allowed is None or a.code in allowed]

    async def failures(self, message_id: int, errors: int) -> list[FailureGroup]:
        """A message's failures grouped, read again only when its ``errors`` counter moved.

        The counter is bumped in the transaction that writes each failure, so an
        unchanged count means unchanged groups; a large finished message is grouped once.
        """
        hit = self._failures.get(message_id)
        if hit is not None and hit[0] == errors:
            return hit[1]
        groups = await self.ctx.store.dashboard.failures(message_id)
        if len(self._failures) >= FAILURE_CACHE:
            self._failures.clear()
        # counted from the groups: a failure committed between the two reads is not lost
        self._failures[message_id] = (sum(g.count for g in groups), groups)
        return groups

    def since(self) -> int:
        return window_start(self.ctx.store_clock(), self.ctx.settings.retention_days)

    # -- sign-in ----------------------------------------------------------------------------

    async def root(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        if viewer is None:
            return secured(RedirectResponse("/signin", status_code=303))
        apps = await self.visible_apps(viewer)
        if len(apps) == 1:
            return secured(RedirectResponse(f"/apps/{apps[0].code}/messages", status_code=303))
        return self.render(request, "apps.html", viewer=viewer, apps=apps)

    async def signin_form(self, request: Request, error: str | None = None) -> Response:
        value = sess.Sessions.new_signin()
        nxt = request.query_params.get("next", "/")
        response = self.render(
            request,
            "signin.html",
            status=401 if error else 200,
            csrf=value,
            error=error,
            next=nxt if _local(nxt) else "/",
        )
        sess.set_cookie(response, request, sess.SIGNIN_COOKIE, value, sess.SIGNIN_SECONDS)
        return response

    async def signin(self, request: Request) -> Response:
        if _has_nul(request):
            return self.problem(request, 400, "text must not contain NUL characters")
        if request.method == "GET":
            return await self.signin_form(request)
        try:
            form = await read_form(request)
        except BadForm as exc:
            return self.problem(request, 400, exc.message)
        if not sess.same(form.get("csrf"), request.cookies.get(sess.SIGNIN_COOKIE)):
            return self.problem(request, 403, "The form was refused (missing or stale CSRF token).")
        raw = (form.get("token") or "").strip()
        try:
            if not raw:
                raise AuthError
            token = await self.ctx.token(raw)
            auth.check_method(token, "getMessageLog", server_method=True)
            self.ctx.limiter.check(f"t{token.id}")
        except (AuthError, ForbiddenError):
            return await self.signin_form(
                request, "That is not a server API token of this service (or it was revoked)."
            )
        except PushtrackError as exc:
            return await self.signin_form(request, exc.message)
        sessions = await self.sessions()
        nxt = form.get("next") or "/"
        response = secured(RedirectResponse(nxt if _local(nxt) else "/", status_code=303))
        sess.set_cookie(
            response, request, sess.COOKIE, sessions.seal(sessions.new(raw)), sess.SESSION_SECONDS
        )
        sess.clear_cookie(response, request, sess.SIGNIN_COOKIE)
        return response

    async def signout(self, request: Request, viewer: Viewer) -> Response:
        response = secured(RedirectResponse("/signin", status_code=303))
        sess.clear_cookie(response, request, sess.COOKIE)
        return response

    # -- messages ---------------------------------------------------------------------------

    async def messages_page(self, request: Request, viewer: Viewer) -> Response:
        _, app = await self.app_of(request, viewer, "list")
        q = request.query_params
        date_from, date_to = _day_param(q.get("from"), "from"), _day_param(q.get("to"), "to")
        if date_from is not None and date_to is not None and date_to < date_from:
            raise BadForm("to: must not be before from")
        platform = q.get("platform") or None
        wanted: list[int] | None = None
        if platform:
            found = platforms.from_name(platform)
            if found is None and platform.isdigit():
                found = platforms.platform_of(int(platform))
            if found is None:
                raise BadForm(f"platform: unknown platform {platform!r}")
            wanted = [int(found)]
        campaign = q.get("campaign") or None
        if campaign is not None and len(campaign) > 64:
            raise BadForm("campaign: at most 64 characters")
        page = _int_param(q.get("page"), "page", 1, 1_000_000)
        total, found_messages = await self.ctx.store.stats.list_messages(
            account=viewer.token.account,
            apps=viewer.token.apps,
            app_code=app.code,
            since=self.since(),
            date_from=date_from,
            date_to=None if date_to is None else date_to + DAY_US - 1,
            campaign=campaign,
            platforms=wanted,
            offset=(page - 1) * PER_PAGE,
            limit=PER_PAGE,
        )
        rows = [_row(m) for m in found_messages]
        keep = {k: v for k, v in q.items() if k != "page" and v}
        pages = max(1, -(-total // PER_PAGE))
        return self.render(
            request,
            "messages.html",
            viewer=viewer,
            app=app,
            apps=await self.visible_apps(viewer),
            section="messages",
            rows=rows,
            total=total,
            page=page,
            pages=pages,
            filters=keep,
            prev_url=f"?{urlencode({**keep, 'page': page - 1})}" if page > 1 else None,
            next_url=f"?{urlencode({**keep, 'page': page + 1})}" if page < pages else None,
        )

    async def _message(self, request: Request, viewer: Viewer) -> tuple[App, MessageSummary]:
        _, app = await self.app_of(request, viewer, "totalsByIntervals")
        code = request.path_params["code"]
        if len(code) > 64:
            raise NotFound
        _, found = await self.ctx.store.stats.list_messages(
            account=viewer.token.account,
            apps=viewer.token.apps,
            app_code=app.code,
            since=self.since(),
            date_from=None,
            date_to=None,
            codes=[code],
            offset=0,
            limit=1,
        )
        if not found:
            raise NotFound
        return app, found[0]

    async def message_page(self, request: Request, viewer: Viewer) -> Response:
        app, m = await self._message(request, viewer)
        ref = await self.ctx.store.stats.find_message(
            viewer.token.account, viewer.token.apps, m.code
        )
        if ref is None:
            raise NotFound
        errors = Funnel.of(m.totals).errors
        hit = self._failures.get(ref.id)
        grouped: Awaitable[list[FailureGroup] | None]
        if (hit is not None and hit[0] == errors) or errors <= INLINE_FAILURES:
            grouped = self.failures(ref.id, errors)
        else:
            grouped = _none()  # grouped by the page's script (``message_failures``)
        groups, latest = await asyncio.gather(
            grouped, self.ctx.store.dashboard.latest_deliveries(ref.id)
        )
        failures = None if groups is None else failure_rows(groups, m.totals)
        n = m.notification
        targeting = {
            k: n[k]
            for k in ("platforms", "users", "conditions", "conditions_operator", "filter")
            if n.get(k) is not None
        }
        devices = n.get("devices")
        return self.render(
            request,
            "message.html",
            viewer=viewer,
            app=app,
            apps=await self.visible_apps(viewer),
            section="messages",
            m=_row(m),
            title=n.get("title"),
            content=n.get("content"),
            devices=devices,
            targeting={k: msgspec.json.encode(v).decode() for k, v in targeting.items()},
            failures=failures,
            latest=latest,
            by_platform=platform_funnels(m.totals),
        )

    async def message_failures(self, request: Request, viewer: Viewer) -> Response:
        """The failures table of a message too large to group while its page waits."""
        _, m = await self._message(request, viewer)
        ref = await self.ctx.store.stats.find_message(
            viewer.token.account, viewer.token.apps, m.code
        )
        if ref is None:
            raise NotFound
        groups = await self.failures(ref.id, Funnel.of(m.totals).errors)
        return self.render(request, "_failures.html", failures=failure_rows(groups, m.totals))

    async def message_series(self, request: Request, viewer: Viewer) -> Response:
        """The chart's data: the message's counters per bucket, summed over platforms."""
        _, m = await self._message(request, viewer)
        ref = await self.ctx.store.stats.find_message(
            viewer.token.account, viewer.token.apps, m.code
        )
        if ref is None:
            raise NotFound
        since = self.since()
        interval = request.query_params.get("interval") or "auto"
        if interval not in ("auto", "minute", "hour"):
            raise BadForm("interval: one of auto, minute, hour")
        if interval == "auto":
            span = await self.ctx.store.stats.activity_span(ref.id, since)
            short = span is not None and span[1] - span[0] <= MINUTE_CHART_SPAN
            interval = "minute" if short else "hour"
        width: Literal["minute", "hour"] = "minute" if interval == "minute" else "hour"
        rows = await self.ctx.store.stats.counters(ref.id, width, since, None, None, None)
        return secured(JSONResponse(series(rows, width, self.ctx.store_clock())))

    # -- device timeline --------------------------------------------------------------------

    async def device_page(self, request: Request, viewer: Viewer) -> Response:
        call, app = await self.app_of(request, viewer, "getMessageLog")
        q = request.query_params
        kind = q.get("kind") or "hwid"
        value = (q.get("q") or "").strip()
        if kind not in ("hwid", "token", "user", "code"):
            raise BadForm("kind: one of hwid, token, user, code")
        if len(value) > 4096:
            raise BadForm("q: at most 4096 characters")
        rows: list[dict[str, Any]] = []
        more = None
        note = None
        if value:
            rows, more, note = await self._trail(call, app, kind, value, q.get("after"))
        return self.render(
            request,
            "device.html",
            viewer=viewer,
            app=app,
            apps=await self.visible_apps(viewer),
            section="devices",
            kind=kind,
            value=value,
            rows=rows,
            note=note,
            more_url=f"?{urlencode({'kind': kind, 'q': value, 'after': more})}" if more else None,
        )

    async def _trail(
        self, call: Call, app: App, kind: str, value: str, after: str | None, limit: int = 0
    ) -> tuple[list[dict[str, Any]], str | None, str | None]:
        note = None
        fields: dict[str, Any] = {"application_code": app.code}
        if kind == "token":
            hwid = await self.ctx.store.dashboard.hwid_of_token(app.id, value)
            if hwid is None:
                return [], None, "No device of this application has that push token."
            note = f"The push token belongs to the device {hwid}."
            fields["hwid"] = hwid
        elif kind == "hwid":
            fields["hwid"] = value
        elif kind == "user":
            fields["user_id"] = value
        else:
            fields["tracking_code"] = value
        if after:
            fields["pagination_token"] = after
        fields["limit"] = limit or TIMELINE_ROWS
        request = envelope.convert(fields, message_log.GetMessageLog)
        rows, token = await message_log.log_page(call, request)
        return [msgspec.structs.asdict(e) for e in message_log.log_entries(rows)], token, note

    async def trail_json(self, request: Request, viewer: Viewer) -> Response:
        """One delivery's statuses (the test-push page watches them)."""
        call, app = await self.app_of(request, viewer, "getMessageLog")
        code = request.query_params.get("code") or ""
        if not code or len(code) > 64:
            raise BadForm("code: a tracking code is required")
        rows, _, _ = await self._trail(call, app, "code", code, None, limit=100)
        return secured(JSONResponse({"data": rows}))

    # -- exports ----------------------------------------------------------------------------

    async def exports_page(self, request: Request, viewer: Viewer) -> Response:
        _, app = await self.app_of(request, viewer, "getTrackingLog")
        today = to_wire(self.ctx.store_clock())[:10]
        if request.method == "POST":
            form = request.state.form
            call = Call(self.ctx, "getTrackingLog", viewer.token)
            try:
                body = envelope.convert(
                    {"date": form.get("date") or today, "application": app.code},
                    scheduled.GetTrackingLog,
                )
                out = await scheduled.get_tracking_log(call, body)
            except PushtrackError as exc:
                return self.render(
                    request,
                    "exports.html",
                    status=400,
                    viewer=viewer,
                    app=app,
                    apps=await self.visible_apps(viewer),
                    section="exports",
                    today=today,
                    error=exc.message,
                )
            target = f"/apps/{app.code}/exports/{out['request_id']}"
            return secured(RedirectResponse(target, status_code=303))
        return self.render(
            request,
            "exports.html",
            viewer=viewer,
            app=app,
            apps=await self.visible_apps(viewer),
            section="exports",
            today=today,
            error=None,
        )

    async def _export(self, request: Request, viewer: Viewer) -> tuple[App, dict[str, Any]]:
        _, app = await self.app_of(request, viewer, "getResults")
        call = Call(self.ctx, "getResults", viewer.token)
        try:
            body = envelope.convert(
                {"request_id": request.path_params["rid"]}, scheduled.GetResults
            )
            out = await scheduled.get_results(call, body)
        except PushtrackError:
            raise NotFound from None
        if not isinstance(out, dict):
            raise NotFound
        return app, out

    async def export_page(self, request: Request, viewer: Viewer) -> Response:
        app, out = await self._export(request, viewer)
        return self.render(
            request,
            "export.html",
            viewer=viewer,
            app=app,
            apps=await self.visible_apps(viewer),
            section="exports",
            rid=request.path_params["rid"],
            result=out,
        )

    async def export_json(self, request: Request, viewer: Viewer) -> Response:
        _, out = await self._export(request, viewer)
        return secured(JSONResponse(out))

    # -- test push --------------------------------------------------------------------------

    async def push_page(self, request: Request, viewer: Viewer) -> Response:
        _, app = await self.app_of(request, viewer, "createMessage")
        values = {"hwid": "", "title": "Test", "content": "A test push from pushtrack"}
        error = None
        if request.method == "POST":
            form = request.state.form
            values = {k: (form.get(k) or "").strip() for k in values}
            call = Call(self.ctx, "createMessage", viewer.token)
            notification: dict[str, Any] = {
                "content": values["content"],
                "devices": [values["hwid"]] if values["hwid"] else [],
                "campaign": "test push",
            }
            if values["title"]:
                notification["title"] = values["title"]
            try:
                body = envelope.convert(
                    {"application": app.code, "notifications": [notification]},
                    messages.CreateMessage,
                )
                out = await messages.create_message(call, body)
            except PushtrackError as exc:
                error = exc.message
            else:
                code = out["Messages"][0]
                tracking_codes = out.get("TrackingCodes") or []
                target = f"/apps/{app.code}/messages/{code}"
                if tracking_codes:
                    target = f"/apps/{app.code}/push/{tracking_codes[0]}?message={code}"
                return secured(RedirectResponse(target, status_code=303))
        return self.render(
            request,
            "push.html",
            status=400 if error else 200,
            viewer=viewer,
            app=app,
            apps=await self.visible_apps(viewer),
            section="push",
            values=values,
            error=error,
        )

    async def push_status_page(self, request: Request, viewer: Viewer) -> Response:
        call, app = await self.app_of(request, viewer, "getMessageLog")
        code = request.path_params["code"]
        rows, _, _ = await self._trail(call, app, "code", code, None, limit=100)
        if not rows:
            raise NotFound
        return self.render(
            request,
            "push_status.html",
            viewer=viewer,
            app=app,
            apps=await self.visible_apps(viewer),
            section="push",
            code=code,
            message=rows[0]["message_code"],
            rows=rows,
        )

    # -- live ---------------------------------------------------------------------------------

    async def live_page(self, request: Request, viewer: Viewer) -> Response:
        _, app = await self.app_of(request, viewer, "getMessageLog")
        return self.render(
            request,
            "live.html",
            viewer=viewer,
            app=app,
            apps=await self.visible_apps(viewer),
            section="live",
        )

    async def live_stream(self, request: Request, viewer: Viewer) -> Response:
        _, app = await self.app_of(request, viewer, "getMessageLog")
        after = request.headers.get("last-event-id") or request.query_params.get("after")
        body: AsyncIterator[bytes] = self.live.stream(
            request, viewer.session.token, viewer.token, app, after
        )
        response = StreamingResponse(
            body,
            media_type="text/event-stream",
            headers={"x-accel-buffering": "no"},
        )
        return secured(response)

    # -- routes -------------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        p = self.page
        return [
            Route("/", self.root, methods=["GET"]),
            Route("/signin", self.signin, methods=["GET", "POST"]),
            Route("/signout", p(self.signout), methods=["POST"]),
            Route("/apps", p(self.apps_page), methods=["GET"]),
            Route("/apps/{app}/messages", p(self.messages_page, "list"), methods=["GET"]),
            Route(
                "/apps/{app}/messages/{code}",
                p(self.message_page, "totalsByIntervals"),
                methods=["GET"],
            ),
            Route(
                "/apps/{app}/messages/{code}/failures",
                p(self.message_failures, "totalsByIntervals"),
                methods=["GET"],
            ),
            Route(
                "/apps/{app}/messages/{code}/series",
                p(self.message_series, "totalsByIntervals"),
                methods=["GET"],
            ),
            Route("/apps/{app}/devices", p(self.device_page, "getMessageLog"), methods=["GET"]),
            Route("/apps/{app}/trail", p(self.trail_json, "getMessageLog"), methods=["GET"]),
            Route(
                "/apps/{app}/exports",
                p(self.exports_page, "getTrackingLog"),
                methods=["GET", "POST"],
            ),
            Route("/apps/{app}/exports/{rid}", p(self.export_page, "getResults"), methods=["GET"]),
            Route(
                "/apps/{app}/exports/{rid}/status",
                p(self.export_json, "getResults"),
                methods=["GET"],
            ),
            Route("/apps/{app}/push", p(self.push_page, "createMessage"), methods=["GET", "POST"]),
            Route(
                "/apps/{app}/push/{code}",
                p(self.push_status_page, "getMessageLog"),
                methods=["GET"],
            ),
            Route("/apps/{app}/live", p(self.live_page, "getMessageLog"), methods=["GET"]),
            Route("/apps/{app}/live/stream", p(self.live_stream, "getMessageLog"), methods=["GET"]),
            Mount("/static", app=_Static(directory=STATIC), name="dashboard-static"),
        ]

    async def apps_page(self, request: Request, viewer: Viewer) -> Response:
        return self.render(
            request, "apps.html", viewer=viewer, apps=await self.visible_apps(viewer)
        )


class _Static(StaticFiles):
    """The dashboard's static files, with the pages' security headers."""

    async def get_response(self, path: str, scope: Any) -> Response:
        response = await super().get_response(path, scope)
        for key, value in SECURITY_HEADERS.items():
            if key != "cache-control":
                response.headers.setdefault(key, value)
        response.headers.setdefault("cache-control", "public, max-age=3600")
        return response


async def _none() -> None:
    return None


def _local(target: str) -> bool:
    """A redirect target on this site (a path, not //host or a scheme)."""
    return target.startswith("/") and not target.startswith("//") and "\\" not in target


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body; the first value of each field."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise BadForm("expected a form (application/x-www-form-urlencoded)")
    try:
        body = await envelope.read_body(request, MAX_FORM_BYTES)
        text = body.decode("utf-8")
    except PushtrackError as exc:
        raise BadForm(exc.message) from None
    except UnicodeDecodeError:
        raise BadForm("the form is not UTF-8") from None
    form = {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}
    if any("\x00" in k or "\x00" in v for k, v in form.items()):
        raise BadForm("text must not contain NUL characters")
    return form


def _has_nul(request: Request) -> bool:
    """Whether the path or the query holds a NUL character (no engine can store one)."""
    if "\x00" in request.url.path:
        return True
    return any("\x00" in k or "\x00" in v for k, v in request.query_params.multi_items())


def _day_param(value: str | None, name: str) -> int | None:
    if not value:
        return None
    try:
        return parse_day(value)
    except ValueError:
        raise BadForm(f'{name}: expected "YYYY-MM-DD", got {value!r}') from None


def _int_param(value: str | None, name: str, low: int, high: int) -> int:
    if not value:
        return low
    if not value.isdigit() or not low <= int(value) <= high:
        raise BadForm(f"{name}: a whole number from {low} to {high}")
    return int(value)


def _row(m: MessageSummary) -> dict[str, Any]:
    n = m.notification
    return {
        "code": m.code,
        "id": m.id,
        "title": n.get("title") or "",
        "content": _text(n.get("content")),
        "campaign": m.campaign,
        "status": m.status,
        "created_at": m.created_at,
        "send_at": m.send_at,
        "platforms": [name_of(p) for p in m.platforms],
        "funnel": Funnel.of(m.totals),
    }


def _text(content: Any) -> str:
    """A notification's content as one line: its text, or a language's of several."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict) and content:
        value = content.get("en") or next(iter(content.values()))
        return value if isinstance(value, str) else ""
    return ""


def series(rows: list[Totals], interval: str, now: int) -> dict[str, Any]:
    """Counters per bucket summed over platforms, every bucket from the first to the last,
    or to now's while that is at most ``CHART_POINTS`` buckets on (empty ones as zeros);
    times in Unix seconds, as uPlot takes them."""
    width = 60_000_000 if interval == "minute" else HOUR_US
    sums: dict[int, list[int]] = {}
    for t in rows:
        acc = sums.setdefault(t.bucket, [0] * len(CHART_SERIES))
        for i, name in enumerate(CHART_SERIES):
            acc[i] += getattr(t, name)
    out: dict[str, Any] = {"interval": interval, "t": []}
    for name in CHART_SERIES:
        out[name] = []
    if sums:
        first, last = min(sums), max(sums)
        current = now - now % width
        if last < current <= first + CHART_POINTS * width:
            last = current
        for bucket in range(first, last + width, width):
            out["t"].append(bucket // 1_000_000)
            values = sums.get(bucket, [0] * len(CHART_SERIES))
            for i, name in enumerate(CHART_SERIES):
                out[name].append(values[i])
    return out
