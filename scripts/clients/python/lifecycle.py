#!/usr/bin/env python3
"""An external dealreg client: drives a full deal lifecycle through `dealreg serve` over
NATS, follows the change feed on JetStream, and validates every reply and feed message
against the JSON Schemas under schemas/.

Only the published contract is used: the subjects (docs/API.md, the subject grammar of the
NATS adapter), the JSON bodies, and schemas/. Requirements: Python 3.9+, nats-py, jsonschema
(with referencing). See scripts/clients/python/README.md.

Exit status: 0 when every step, check and validation passed; 1 on any failure (the message
says which step and shows the reply); 2 on bad usage or unusable schemas.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Optional


def position(token: Any) -> tuple[int, int]:
    """A log position as the pair it orders by (docs/API.md, positions): a token is
    "N" (the pair (N, N)) or "C/P"; a bare number is what older servers sent."""
    if isinstance(token, int) and not isinstance(token, bool):
        return (token, token)
    if isinstance(token, str):
        parts = token.split("/")
        if 1 <= len(parts) <= 2 and all(p.isdigit() for p in parts):
            numbers = [int(p) for p in parts]
            return (numbers[0], numbers[-1])
    raise Failure(f"{token!r} is not a log position")

try:
    import nats
    from nats.errors import NoRespondersError, TimeoutError as NatsTimeout
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
    from nats.js.errors import NotFoundError
except ImportError:  # pragma: no cover - reported to the user
    sys.exit("lifecycle.py needs nats-py: python3 -m pip install nats-py")
try:
    import jsonschema
    import referencing
    import referencing.jsonschema
except ImportError:  # pragma: no cover
    sys.exit("lifecycle.py needs jsonschema (>= 4.18, with referencing): python3 -m pip install jsonschema")

SCHEMA_BASE = "https://dealreg.example/schemas/"
FEED_STREAM = "DEALREG_FEED"
CM = "dealreg.vendor.channel_manager.cmd"
REV_OPS = "dealreg.vendor.rev_ops.cmd"
PRODUCT_LINE = "analytics"
REQUEST_TIMEOUT = 20.0

# The schema files this client validates against, by path under schemas/.
REQUIRED_SCHEMAS = {
    "reply": "reply.schema.json",
    "query_reply": "query-reply.schema.json",
    "error": "error.schema.json",
    "feed": "feed-message.schema.json",
    "row_vendor": "rows/pipeline-registration.schema.json",
    "row_partner": "rows/pipeline-registration-partner.schema.json",
}


class Failure(Exception):
    """A failed step or check: the run stops and exits 1."""


def show(value: Any, limit: int = 2000) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


# ----------------------------------------------------------------------------- schemas


class Schemas:
    """Every file under schemas/ registered by its `$id`, so `$ref`s between files resolve."""

    def __init__(self, root: Path):
        self.root = root
        self.validated = 0
        if not root.is_dir():
            raise Failure(
                f"the schema directory {root} does not exist; the schemas are not generated yet "
                "(run with --no-schemas only as a development aid)"
            )
        resources = []
        self.by_id: dict[str, dict] = {}
        for path in sorted(root.rglob("*.json")):
            try:
                contents = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise Failure(f"schema {path} cannot be read as JSON: {e}") from e
            if not isinstance(contents, dict):
                continue
            rel = path.relative_to(root).as_posix()
            schema_id = contents.get("$id")
            if schema_id is None:
                # Not a schema (say an AsyncAPI document or a fixture): skip it.
                continue
            expected = SCHEMA_BASE + rel
            if schema_id != expected:
                raise Failure(f"schema {path}: `$id` is {schema_id!r}, expected {expected!r}")
            resource = referencing.Resource.from_contents(
                contents, default_specification=referencing.jsonschema.DRAFT202012
            )
            resources.append((schema_id, resource))
            self.by_id[schema_id] = contents
        self.registry = referencing.Registry().with_resources(resources).crawl()
        missing = [rel for rel in REQUIRED_SCHEMAS.values() if SCHEMA_BASE + rel not in self.by_id]
        if missing:
            raise Failure(
                f"schemas missing under {root}: {', '.join(missing)} (each with `$id` "
                f"{SCHEMA_BASE}<path>); the schemas are not generated yet "
                "(run with --no-schemas only as a development aid)"
            )
        self.row_validators: dict[str, Any] = {}
        self.rows_checked: set[str] = set()
        self.rows_unchecked: set[str] = set()
        self.validators = {}
        for name, rel in REQUIRED_SCHEMAS.items():
            schema = self.by_id[SCHEMA_BASE + rel]
            cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
            try:
                cls.check_schema(schema)
            except jsonschema.SchemaError as e:
                raise Failure(f"schema {rel} is not a valid JSON Schema: {e.message}") from e
            self.validators[name] = cls(
                schema, registry=self.registry, format_checker=cls.FORMAT_CHECKER
            )

    def check_row(self, view: str, table: str, audience: str, row: Any, what: str) -> None:
        """A row of another table, against schemas/rows/<view>-<table>[-partner].schema.json
        when such a file exists (a partner's row: the `-partner` form, else the one form)."""
        names = [f"rows/{view}-{table}.schema.json"]
        if audience == "partner":
            names.insert(0, f"rows/{view}-{table}-partner.schema.json")
        for rel in names:
            if self.check_file(rel, row, what):
                return
        self.rows_unchecked.add(f"{view}.{table} ({audience})")

    def check_file(self, rel: str, instance: Any, what: str) -> bool:
        """Validates against schemas/<rel> when it exists (the optional checks); False when
        there is no such schema."""
        schema = self.by_id.get(SCHEMA_BASE + rel)
        if schema is None:
            return False
        validator = self.row_validators.get(rel)
        if validator is None:
            cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
            try:
                cls.check_schema(schema)
            except jsonschema.SchemaError as e:
                raise Failure(f"schema {rel} is not a valid JSON Schema: {e.message}") from e
            validator = self.row_validators[rel] = cls(
                schema, registry=self.registry, format_checker=cls.FORMAT_CHECKER)
        self._report(validator, instance=instance, what=what, rel=rel)
        self.rows_checked.add(rel)
        return True

    def closed_properties(self, name: str) -> Optional[set]:
        """The properties a required schema names (None when it names none)."""
        props = self.by_id[SCHEMA_BASE + REQUIRED_SCHEMAS[name]].get("properties")
        return set(props) if isinstance(props, dict) else None

    def check(self, name: str, instance: Any, what: str) -> None:
        self._report(self.validators[name], instance, what, REQUIRED_SCHEMAS[name])

    def _report(self, validator, instance: Any, what: str, rel: str) -> None:
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        if errors:
            lines = []
            for e in errors[:5]:
                where = "/".join(str(p) for p in e.absolute_path) or "(root)"
                lines.append(f"  at {where}: {e.message[:300]}")
            raise Failure(
                f"{what} does not match {rel}:\n" + "\n".join(lines)
                + f"\n  instance: {show(instance)}"
            )
        self.validated += 1


class NoSchemas:
    """--no-schemas: validation skipped (a development aid, never a passing run)."""

    validated = 0

    def check(self, name: str, instance: Any, what: str) -> None:
        return None

    def check_row(self, view: str, table: str, audience: str, row: Any, what: str) -> None:
        return None

    def check_file(self, rel: str, instance: Any, what: str) -> bool:
        return False

    def closed_properties(self, name: str) -> Optional[set]:
        return None


# ------------------------------------------------------------------------------ client


class Client:
    def __init__(self, nc, schemas, partner_a: str, partner_b: str):
        self.nc = nc
        self.schemas = schemas
        self.partner_a = partner_a
        self.partner_b = partner_b
        self.forbidden_for_a: list[str] = []  # ids partner A must never see
        self.forbidden_for_b: list[str] = []
        self.requests = 0
        self.last_position = "0"
        self.leaks_to_b: list[str] = []

    def _audience(self, subject: str) -> Optional[str]:
        tokens = subject.split(".")
        if len(tokens) > 2 and tokens[1] == "partner":
            return tokens[2]
        return None

    def _partner_safety(self, subject: str, raw: str, sent: str) -> None:
        # An id the request itself carried (a probe for another partner's registration) may
        # be echoed back: the asker knew it already.
        audience = self._audience(subject)
        if audience == self.partner_a:
            for word in self.forbidden_for_a:
                if word in raw and word not in sent:
                    raise Failure(f"partner-safety: a reply to partner A on {subject} names {word} (partner B's): {show(raw)}")
        elif audience == self.partner_b:
            for word in self.forbidden_for_b:
                if word in raw and word not in sent:
                    self.leaks_to_b.append(f"{subject}: names {word}")

    async def _request(self, subject: str, body: bytes, headers: Optional[dict]) -> tuple[Any, dict, str]:
        self.requests += 1
        try:
            msg = await self.nc.request(subject, body, timeout=REQUEST_TIMEOUT, headers=headers)
        except NoRespondersError as e:
            raise Failure(f"no responder on {subject}: is `dealreg serve` running?") from e
        except NatsTimeout as e:
            raise Failure(f"no reply on {subject} within {REQUEST_TIMEOUT:.0f} s") from e
        raw = msg.data.decode("utf-8", errors="replace")
        try:
            reply = json.loads(raw)
        except ValueError as e:
            raise Failure(f"the reply on {subject} is not JSON: {show(raw)}") from e
        self._partner_safety(subject, raw, body.decode("utf-8", errors="replace"))
        return reply, dict(msg.headers or {}), raw

    def _check_error(self, subject: str, reply: Any, headers: dict, expect_code: Optional[str]) -> None:
        if not isinstance(reply, dict) or reply.get("ok") is not False:
            return
        error = reply.get("error")
        if not isinstance(error, dict):
            raise Failure(f"a refusal on {subject} carries no `error` object: {show(reply)}")
        self.schemas.check("error", error, f"the error on {subject}")
        header = headers.get("Nats-Service-Error")
        status = headers.get("Nats-Service-Error-Code")
        if not header or not status:
            raise Failure(f"a refusal on {subject} lacks Nats-Service-Error/-Code headers: {headers}")
        if not header.startswith(str(error.get("code")) + ":"):
            raise Failure(f"Nats-Service-Error on {subject} is {header!r}, not `<code>: <message>` for {error.get('code')}")
        if not status.isdigit():
            raise Failure(f"Nats-Service-Error-Code on {subject} is not a status: {status!r}")
        if expect_code is not None and error.get("code") != expect_code:
            raise Failure(f"{subject}: expected the error {expect_code}, got {show(reply)}")

    async def command(self, subject: str, command: dict, *, key: Optional[str] = None,
                      key_in_header: bool = False, expect_ok: bool = True,
                      expect_code: Optional[str] = None, raw_body: Optional[bytes] = None,
                      probe: bool = False) -> dict:
        """Sends a command; `probe`: deliberately bad input (the body is not validated)."""
        body: dict[str, Any] = {"command": command}
        headers = None
        if key is not None:
            if key_in_header:
                headers = {"Nats-Msg-Id": key}
            else:
                body["idempotency_key"] = key
        if raw_body is None and not probe:
            self.schemas.check_file("nats-command-body.schema.json", body, f"the body this client sends on {subject}")
        payload = raw_body if raw_body is not None else json.dumps(body).encode()
        reply, hdrs, _ = await self._request(subject, payload, headers)
        self.schemas.check("reply", reply, f"the reply on {subject}")
        self._check_error(subject, reply, hdrs, expect_code)
        if expect_ok and reply.get("ok") is not True:
            raise Failure(f"{subject} was refused: {show(reply)} (headers {hdrs})")
        if not expect_ok and reply.get("ok") is not False:
            raise Failure(f"{subject} was expected to be refused, got {show(reply)}")
        if expect_ok and "Nats-Service-Error" in hdrs:
            raise Failure(f"{subject}: an ok reply carries error headers {hdrs}")
        for line in reply.get("events") or []:
            if "position" in line and position(line["position"]) > position(self.last_position):
                self.last_position = line["position"]
        return reply

    async def query(self, subject: str, body: dict, *, expect_ok: bool = True,
                    expect_code: Optional[str] = None) -> dict:
        self.schemas.check_file("query-request.schema.json", body, f"the query body this client sends on {subject}")
        reply, hdrs, _ = await self._request(subject, json.dumps(body).encode(), None)
        self.schemas.check("query_reply", reply, f"the reply on {subject}")
        self._check_error(subject, reply, hdrs, expect_code)
        if expect_ok:
            if reply.get("ok") is not True:
                raise Failure(f"query {subject} {show(body)} was refused: {show(reply)} (headers {hdrs})")
            if body.get("min_position") and position(reply.get("position", "0")) < position(body["min_position"]):
                raise Failure(f"query {subject} answered at {reply.get('position')}, before min_position {body['min_position']}")
            view = subject.rsplit(".", 1)[-1]
            partner = subject.startswith("dealreg.partner.")
            answer_schema = {
                "pipeline": "answers/pipeline-partner.schema.json" if partner else "answers/pipeline.schema.json",
                "ledger": "answers/ledger.schema.json",
                "conflicts": "answers/conflicts.schema.json",
                "registration": "answers/registration.schema.json",
                "metrics": "metrics-report.schema.json",
            }.get(view)
            if answer_schema and not self.schemas.check_file(answer_schema, reply.get("answer"), f"the `{view}` answer on {subject}"):
                if not isinstance(self.schemas, NoSchemas):
                    raise Failure(f"no answer schema {answer_schema} under schemas/ for the `{view}` answer")
        elif reply.get("ok") is not False:
            raise Failure(f"query {subject} was expected to be refused, got {show(reply)}")
        return reply


def partner_safe_row(schemas, row: dict, what: str) -> None:
    """A partner's row carries only what the partner row schema names (the schema leaves
    additional properties open, so this is checked here)."""
    allowed = schemas.closed_properties("row_partner")
    if allowed is None or not isinstance(row, dict):
        return
    extra = sorted(set(row) - allowed)
    if extra:
        raise Failure(f"partner-safety: {what} carries fields the partner row schema does not name: {extra}: {show(row)}")


def event_types(reply: dict) -> list[str]:
    return [(line.get("event") or {}).get("type") for line in reply.get("events") or []]


def require_events(reply: dict, wanted: list[str], step: str) -> None:
    types = event_types(reply)
    for w in wanted:
        if w not in types:
            raise Failure(f"{step}: the reply has no `{w}` event (events: {types}): {show(reply)}")


def walk(value: Any):
    """Every dict inside value."""
    if isinstance(value, dict):
        yield value
        for v in value.values():
            yield from walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk(v)


def rows_of(answer: Any, registration_id: str) -> list[dict]:
    return [d for d in walk(answer) if d.get("registration_id") == registration_id and "status" in d]


# ---------------------------------------------------------------------------- the feed


class Feed:
    """A durable pull consumer on DEALREG_FEED, its messages validated and checked."""

    def __init__(self, js, schemas, durable: str, partner_a: str):
        self.js = js
        self.schemas = schemas
        self.durable = durable
        self.partner_a = partner_a
        self.sub = None
        self.messages: list[tuple[str, dict]] = []
        self.last: dict[tuple[str, str], int] = {}
        self.forbidden_for_a: list[str] = []
        self.tables: set[str] = set()

    async def start(self) -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                await self.js.stream_info(FEED_STREAM)
                break
            except NotFoundError:
                if time.monotonic() > deadline:
                    raise Failure(f"the JetStream stream {FEED_STREAM} does not exist (dealreg serve creates it on start)")
                await asyncio.sleep(0.1)
        await self.js.add_consumer(FEED_STREAM, ConsumerConfig(
            durable_name=self.durable,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            filter_subject="dealreg.feed.>",
            description="scripts/clients/python/lifecycle.py",
        ))
        self.sub = await self.js.pull_subscribe_bind(durable=self.durable, stream=FEED_STREAM)

    def _take(self, msg) -> None:
        subject = msg.subject
        raw = msg.data.decode("utf-8", errors="replace")
        try:
            body = json.loads(raw)
        except ValueError as e:
            raise Failure(f"a feed message on {subject} is not JSON: {show(raw)}") from e
        self.schemas.check("feed", body, f"the feed message on {subject}")
        tokens = subject.split(".")
        # dealreg.feed.<view>.<table>.vendor | dealreg.feed.<view>.<table>.partner.<id>
        if len(tokens) < 5 or tokens[:2] != ["dealreg", "feed"]:
            raise Failure(f"a feed message on an unexpected subject {subject}")
        view, table = tokens[2], tokens[3]
        if body.get("view") != view or body.get("table") != table:
            raise Failure(f"the feed message on {subject} says view/table {body.get('view')}/{body.get('table')}")
        audience = tokens[4]
        if audience == "partner":
            if len(tokens) != 6:
                raise Failure(f"a partner feed subject without a partner id: {subject}")
        elif audience != "vendor" or len(tokens) != 5:
            raise Failure(f"a feed subject with an unknown audience: {subject}")
        if body.get("deleted") != (body.get("row") is None):
            raise Failure(f"the feed message on {subject}: `deleted` disagrees with `row`: {show(body)}")
        if body.get("row") is not None:
            if table == "registration" and view == "pipeline":
                which = "row_vendor" if audience == "vendor" else "row_partner"
                self.schemas.check(which, body["row"], f"the row of the feed message on {subject}")
                if audience == "partner":
                    partner_safe_row(self.schemas, body["row"], f"the row of the feed message on {subject}")
            else:
                # Other tables: validated when schemas/rows/ has their schema.
                self.schemas.check_row(view, table, audience, body["row"], f"the row of the feed message on {subject}")
        self.tables.add(f"{view}.{table}.{audience}")
        if audience == "partner" and tokens[5] == self.partner_a:
            for word in self.forbidden_for_a:
                if word in raw:
                    raise Failure(f"partner-safety: partner A's feed message on {subject} names {word} (partner B's): {show(raw)}")
        key = (subject, body.get("key"))
        if not isinstance(body.get("position"), str):
            raise Failure(f"the feed message on {subject} has no position token: {show(body)}")
        at = position(body["position"])
        if key in self.last and at <= self.last[key]:
            raise Failure(f"feed positions went backwards for {body.get('key')} on {subject}: {self.last[key]} then {at}")
        self.last[key] = at
        self.messages.append((subject, body))

    async def read_until(self, expectations: dict[str, Any], timeout: float) -> None:
        """Reads until every expectation (a predicate over (subject, body)) has matched one
        message, or fails after `timeout` seconds naming the missing ones."""
        pending = dict(expectations)
        for subject, body in self.messages:
            for name, predicate in list(pending.items()):
                if predicate(subject, body):
                    del pending[name]
        deadline = time.monotonic() + timeout
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                seen = [f"{s} {b.get('key')}@{b.get('position')} {(b.get('row') or {}).get('status', '')}"
                        for s, b in self.messages]
                raise Failure(
                    f"the feed did not deliver within {timeout:.0f} s: {', '.join(pending)}\n  seen: "
                    + ("\n        ".join(seen) or "nothing")
                )
            try:
                batch = await self.sub.fetch(64, timeout=min(1.0, max(0.1, left)))
            except NatsTimeout:
                continue
            for msg in batch:
                self._take(msg)
                await msg.ack()
                subject, body = self.messages[-1]
                for name, predicate in list(pending.items()):
                    if predicate(subject, body):
                        del pending[name]

    async def drain_rest(self, seconds: float = 0.5) -> None:
        """Reads (and checks) what else is waiting."""
        try:
            batch = await self.sub.fetch(256, timeout=seconds)
        except NatsTimeout:
            return
        for msg in batch:
            self._take(msg)
            await msg.ack()

    async def delete(self) -> None:
        try:
            if self.sub is not None:
                await self.sub.unsubscribe()
        except Exception:
            pass
        try:
            await self.js.delete_consumer(FEED_STREAM, self.durable)
        except Exception:  # best effort: the consumer is only for this run
            pass


# --------------------------------------------------------------------------- lifecycle


def onboard(partner: str, name: str, motions: list[str]) -> dict:
    return {
        "type": "onboard_partner", "partner_id": partner, "name": name, "motions": motions,
        "tier": "gold", "territories": [{"region": "emea", "vertical": "manufacturing"}],
        "capacity": 10,
    }


def submission(registration: str, partner: str, domain: str, company: str, today: dt.date) -> dict:
    return {
        "type": "submit_registration",
        "registration_id": registration,
        "partner_id": partner,
        "customer": {
            "company": company, "domain": domain,
            "contact": {"name": "Dana Buyer", "email": f"dana@{domain}"},
        },
        "product_line": PRODUCT_LINE,
        "motion": "reseller",
        "estimated_amount": {"amount_minor": 4_800_000, "currency": "EUR"},
        "expected_close": (today + dt.timedelta(days=60)).isoformat(),
        "proof_of_work": f"Discovery workshop with the CFO on {today.isoformat()}; notes in the CRM",
        "kind": "new_business",
    }


async def lifecycle(args) -> int:
    schemas = NoSchemas() if args.no_schemas else Schemas(Path(args.schemas))
    run = uuid.uuid4().hex[:8]
    today = dt.date.today()
    partner_a, partner_b, partner_c = (str(uuid.uuid4()) for _ in range(3))
    reg_a, reg_b = str(uuid.uuid4()), str(uuid.uuid4())
    domain = f"acme-{run}.example"
    won_amount = {"amount_minor": 5_000_000, "currency": "EUR"}

    errors: list[str] = []

    async def on_error(e: Exception) -> None:  # nats-py's callbacks would print tracebacks
        errors.append(repr(e))

    try:
        nc = await asyncio.wait_for(
            nats.connect(args.nats_url, name="dealreg-python-lifecycle", connect_timeout=2,
                         max_reconnect_attempts=2, reconnect_time_wait=0.5, error_cb=on_error),
            timeout=10)
    except Exception as e:
        raise Failure(f"cannot connect to NATS at {args.nats_url}: {errors[-1] if errors else repr(e)}") from e
    # JetStream API requests get time: a loaded machine answers slower than the default 5 s.
    feed = Feed(nc.jetstream(timeout=15), schemas, args.durable or f"lifecycle-{run}", partner_a)
    client = Client(nc, schemas, partner_a, partner_b)
    client.forbidden_for_a = [partner_b, reg_b]
    client.forbidden_for_b = [partner_a, reg_a]
    feed.forbidden_for_a = [partner_b, reg_b]
    step = "setup"
    try:
        step = "creating the feed consumer"
        await feed.start()

        step = "onboarding and certifying the partners"
        for partner, name, motions in [(partner_a, f"Northwind {run}", ["reseller"]),
                                       (partner_b, f"Contoso {run}", ["reseller"]),
                                       (partner_c, f"Fabrikam ISV {run}", ["tech_isv"])]:
            r = await client.command(f"{CM}.onboard_partner", onboard(partner, name, motions), key=f"onboard-{partner}")
            require_events(r, ["partner_onboarded"], f"onboard {name}")
        for partner in (partner_a, partner_b):
            r = await client.command(f"{CM}.certify_partner", {
                "type": "certify_partner", "partner_id": partner, "product_line": PRODUCT_LINE,
                "expires_on": (today + dt.timedelta(days=700)).isoformat(),
            }, key=f"certify-{partner}")
            require_events(r, ["partner_certified"], "certify")

        step = "partner A submits"
        submit_a = f"dealreg.partner.{partner_a}.cmd.submit_registration"
        body_a = submission(reg_a, partner_a, domain, "Acme Manufacturing", today)
        first = await client.command(submit_a, body_a, key=f"submit-{reg_a}", key_in_header=True)
        require_events(first, ["registration_submitted"], step)
        again = await client.command(submit_a, body_a, key=f"submit-{reg_a}", key_in_header=True)
        if again.get("replayed") is False or again.get("events") != first.get("events"):
            raise Failure(f"the same Nats-Msg-Id again was not replayed: {show(again)}")

        step = "partner B submits a conflicting registration"
        submit_b = f"dealreg.partner.{partner_b}.cmd.submit_registration"
        # The same account spelled differently: accounts are domains, any spelling.
        r = await client.command(submit_b, submission(reg_b, partner_b, f"https://www.{domain.upper()}/deal", "ACME", today),
                                 key=f"submit-{reg_b}")
        require_events(r, ["registration_submitted"], step)

        step = "bad input is refused with coded errors"
        await client.command(submit_a, {}, raw_body=b'{"command": ', expect_ok=False, expect_code="malformed_json")
        await client.command(f"dealreg.partner.{partner_a}.cmd.steal_deal", {"type": "steal_deal"},
                             probe=True, expect_ok=False, expect_code="unknown_command")

        step = "the channel manager approves A's registration"
        r = await client.command(f"{CM}.approve_registration", {
            "type": "approve_registration", "account": domain, "registration_id": reg_a,
            "rationale": "Qualified: proof of work checked, first to register",
        }, key=f"approve-{reg_a}")
        require_events(r, ["registration_approved"], step)
        step = "B's registration cannot be approved too"
        r = await client.command(f"{CM}.approve_registration", {
            "type": "approve_registration", "account": domain, "registration_id": reg_b,
            "rationale": "trying the rival",
        }, key=f"approve-{reg_b}", expect_ok=False, expect_code="already_protected")

        step = "the protection window is extended"
        # There is no separate extension request: a partner asking is refused (recorded, so
        # the channel manager sees it), and a role in the policy's extensions.granted_by
        # (the channel manager by default) extends.
        r = await client.command(f"dealreg.partner.{partner_a}.cmd.extend_protection", {
            "type": "extend_protection", "account": domain, "registration_id": reg_a,
            "reason": "Customer procurement needs another month",
        }, key=f"extend-request-{reg_a}", expect_ok=False, expect_code="not_authorised")
        r = await client.command(f"{CM}.extend_protection", {
            "type": "extend_protection", "account": domain, "registration_id": reg_a,
            "reason": "Customer procurement needs another month",
        }, key=f"extend-{reg_a}")
        require_events(r, ["protection_extended"], step)

        step = "attribution: A sources, an ISV influences"
        r = await client.command(f"dealreg.partner.{partner_a}.cmd.set_sourcing_partner", {
            "type": "set_sourcing_partner", "account": domain, "registration_id": reg_a,
            "partner_id": partner_a, "reason": "We found and ran the deal",
        }, key=f"source-{reg_a}")
        # A partner's reply is partner-safe: its own credit, not the vendor's attribution.
        require_events(r, ["credit_recorded"], step)
        r = await client.command(f"{CM}.add_influencer", {
            "type": "add_influencer", "account": domain, "registration_id": reg_a,
            "partner_id": partner_c, "percent": 20, "reason": "ISV integration was decisive",
        }, key=f"influence-{reg_a}")
        require_events(r, ["influencer_added"], step)

        step = "the partner walks the deal to Transact, its motion's closing stage"
        for to_stage, evidence in [
            ("qualification", {"note": "Demand and technical fit confirmed with the buyer"}),
            ("configure_and_quote", {"note": "SKUs agreed", "next_step": "Send the quote"}),
            ("transact", {"note": "Quote within the band", "discount_percent": 10}),
        ]:
            r = await client.command(f"dealreg.partner.{partner_a}.cmd.advance_stage", {
                "type": "advance_stage", "account": domain, "registration_id": reg_a,
                "to_stage": to_stage, "evidence": evidence,
            }, key=f"advance-{reg_a}-{to_stage}")
            require_events(r, ["stage_advanced"], step)

        step = "RevOps records the win (revenue) and the commission accrues"
        won = await client.command(f"{REV_OPS}.mark_won", {
            "type": "mark_won", "account": domain, "registration_id": reg_a, "amount": won_amount,
            "order_reference": "PO-2026-0042",
        }, key=f"won-{reg_a}")
        require_events(won, ["deal_won"], step)
        won_at = max((line["position"] for line in won["events"]), key=position)
        last = client.last_position

        step = "queries"
        pipeline = await client.query(f"dealreg.partner.{partner_a}.query.pipeline",
                                      {"min_position": last, "timeout_ms": 10000})
        rows = rows_of(pipeline["answer"], reg_a)
        if not rows or rows[0].get("status") != "won":
            raise Failure(f"partner A's pipeline does not show {reg_a} won: {show(pipeline)}")
        if rows_of(pipeline["answer"], reg_b):
            raise Failure(f"partner A's pipeline shows B's registration: {show(pipeline)}")
        for row in rows:
            schemas.check("row_partner", row, "a row of partner A's pipeline answer")
            partner_safe_row(schemas, row, "a row of partner A's pipeline answer")
        vendor_pipeline = await client.query("dealreg.vendor.query.pipeline", {"min_position": last})
        vendor_rows = rows_of(vendor_pipeline["answer"], reg_a) + rows_of(vendor_pipeline["answer"], reg_b)
        if len(vendor_rows) != 2:
            raise Failure(f"the vendor pipeline does not show both registrations: {show(vendor_pipeline)}")
        for row in vendor_rows:
            schemas.check("row_vendor", row, "a row of the vendor pipeline answer")

        ledger = await client.query(f"dealreg.partner.{partner_a}.query.ledger",
                                    {"min_position": last, "timeout_ms": 10000})
        entries = [e for e in ledger["answer"].get("entries", [])
                   if e.get("registration_id") == reg_a and e.get("partner_id") == partner_a]
        accruals = [e for e in entries if e.get("kind") == "accrual"]
        if not accruals:
            raise Failure(f"partner A's ledger has no accrual for {reg_a}: {show(ledger)}")
        commission = accruals[0].get("amount_minor")
        if type(commission) is not int or commission <= 0 or commission > won_amount["amount_minor"]:
            raise Failure(f"the commission is not a positive integer amount in minor units: {show(accruals[0])}")
        if accruals[0].get("currency") != "EUR":
            raise Failure(f"the commission is not in the deal's currency: {show(accruals[0])}")

        vendor_ledger = await client.query("dealreg.vendor.query.ledger",
                                           {"min_position": last, "partner_id": partner_c})
        influenced = [e for e in vendor_ledger["answer"].get("entries", []) if e.get("registration_id") == reg_a]
        if not influenced or influenced[0].get("partner_id") != partner_c:
            raise Failure(f"the vendor ledger has no influenced accrual for the ISV: {show(vendor_ledger)}")

        conflicts = await client.query("dealreg.vendor.query.conflicts",
                                       {"min_position": last, "account": f"www.{domain}"})
        flags = [flag for flags in (conflicts["answer"].get("conflicts") or {}).values() for flag in flags]
        if domain not in (conflicts["answer"].get("conflicts") or {}):
            raise Failure(f"the vendor conflicts view has no flag for {domain}: {show(conflicts)}")
        if not any(reg_a in json.dumps(f) and reg_b in json.dumps(f) for f in flags):
            raise Failure(f"no conflict flag names both registrations: {show(conflicts)}")

        metrics = await client.query("dealreg.vendor.query.metrics", {"min_position": last})
        if not metrics.get("answer"):
            raise Failure(f"the metrics answer is empty: {show(metrics)}")
        schemas.check_file("metrics-report.schema.json", metrics["answer"], "the metrics answer")

        history = await client.query("dealreg.vendor.query.registration",
                                     {"registration_id": reg_a, "min_position": last})
        types = [(line.get("event") or {}).get("type") for line in history["answer"].get("events", [])]
        for wanted in ["registration_submitted", "registration_approved", "protection_extended",
                       "sourcing_partner_set", "influencer_added", "deal_won"]:
            if wanted not in types:
                raise Failure(f"the registration history lacks `{wanted}`: {types}")
        for line in history["answer"]["events"]:
            schemas.check_file("history-line.schema.json", line, "a line of the vendor registration history")
        positions = [line.get("position") for line in history["answer"]["events"]]
        if positions != sorted(positions, key=position):
            raise Failure(f"the registration history is not in log order: {positions}")

        mine = await client.query(f"dealreg.partner.{partner_a}.query.registration",
                                  {"registration_id": reg_a, "min_position": last})
        if not mine["answer"].get("events"):
            raise Failure(f"partner A's history of its own registration is empty: {show(mine)}")
        for line in mine["answer"]["events"]:
            schemas.check_file("partner-event.schema.json", line.get("event"), "an event of partner A's registration history")
        # Another partner's registration is unknown to A, exactly like one that does not exist.
        await client.query(f"dealreg.partner.{partner_a}.query.registration",
                           {"registration_id": reg_b, "min_position": last},
                           expect_ok=False, expect_code="unknown_registration")
        await client.query(f"dealreg.partner.{partner_a}.query.ledger", {"partner_id": partner_b},
                           expect_ok=False, expect_code="not_permitted")
        await client.query(f"dealreg.partner.{partner_a}.query.conflicts", {},
                           expect_ok=False, expect_code="unknown_view")
        await client.query("dealreg.vendor.query.pipeline", {"min_position": str(10**9), "timeout_ms": 200},
                           expect_ok=False, expect_code="view_timeout")

        step = "the change feed"
        reg_a_key, reg_b_key = f"registration/{reg_a}", f"registration/{reg_b}"
        vendor_reg = "dealreg.feed.pipeline.registration.vendor"
        partner_reg = lambda p: f"dealreg.feed.pipeline.registration.partner.{p}"

        def final(subject: str, key: str, status: str, at: str):
            return lambda s, b: (s == subject and b.get("key") == key
                                 and position(b.get("position", "0")) >= position(at)
                                 and (b.get("row") or {}).get("status") == status)

        expectations = {
            f"vendor row of A's registration, won (>= {won_at})": final(vendor_reg, reg_a_key, "won", won_at),
            f"partner A's row of its registration, won (>= {won_at})": final(partner_reg(partner_a), reg_a_key, "won", won_at),
            "vendor row of B's registration": lambda s, b: s == vendor_reg and b.get("key") == reg_b_key and b.get("row") is not None,
            "partner B's row of its registration": lambda s, b: s == partner_reg(partner_b) and b.get("key") == reg_b_key and b.get("row") is not None,
            "partner A's commission entry": lambda s, b: (s.startswith("dealreg.feed.ledger.") and s.endswith(f".partner.{partner_a}")
                                                          and isinstance(b.get("row"), dict) and b["row"].get("registration_id") == reg_a
                                                          and b["row"].get("amount_minor") == commission),
            "the vendor's commission entry for A": lambda s, b: (s.startswith("dealreg.feed.ledger.") and s.endswith(".vendor")
                                                                 and isinstance(b.get("row"), dict) and b["row"].get("partner_id") == partner_a
                                                                 and b["row"].get("amount_minor") == commission),
        }
        await feed.read_until(expectations, args.feed_timeout)
        await feed.drain_rest()
        for subject, body in feed.messages:
            if subject.endswith(f".partner.{partner_a}") and body.get("key") == reg_b_key:
                raise Failure(f"partner A's feed carries B's registration: {subject}")

        if client.leaks_to_b:
            print("warning: replies to partner B name partner A's ids: " + "; ".join(client.leaks_to_b), file=sys.stderr)

        print("dealreg external client (python): OK")
        print(f"  server           {args.nats_url}")
        print(f"  partners         A={partner_a} B={partner_b} ISV={partner_c}")
        print(f"  account          {domain}, product line {PRODUCT_LINE}")
        print(f"  registration A   {reg_a}: submitted, approved, extended, won at position {won_at}")
        print(f"  registration B   {reg_b}: conflicting, refused approval (already_protected)")
        print(f"  commission       {commission} EUR minor units to A (sourced); ISV influenced {influenced[0].get('amount_minor')}")
        print(f"  conflict flags   {len(flags)} on {domain}")
        print(f"  requests         {client.requests} (last command position {last})")
        print(f"  feed messages    {len(feed.messages)} read, positions increasing per subject and key")
        print(f"  feed tables      {', '.join(sorted(feed.tables))}")
        if args.no_schemas:
            print("  schemas          NOT VALIDATED (--no-schemas: a development aid, not a passing run)")
        else:
            print(f"  schemas          {schemas.validated} documents valid against {Path(args.schemas)}")
            if schemas.rows_checked:
                print(f"  also valid       against {', '.join(sorted(schemas.rows_checked))}")
            if schemas.rows_unchecked:
                print(f"  rows unchecked   no schema for {', '.join(sorted(schemas.rows_unchecked))}")
        print("  partner safety   nothing partner A received names partner B")
        return 0
    except Failure as e:
        print(f"FAILED ({step}): {e}", file=sys.stderr)
        return 1
    except (nats.errors.Error, OSError, asyncio.TimeoutError) as e:
        print(f"FAILED ({step}): NATS error {e!r}", file=sys.stderr)
        return 1
    finally:
        if not args.keep_consumer:
            await feed.delete()
        await nc.close()


def main() -> int:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nats-url", required=True, help="the NATS server dealreg serve is connected to")
    parser.add_argument("--schemas", default=str(here.parent.parent.parent / "schemas"),
                        help="the schema directory (default: the repository's schemas/)")
    parser.add_argument("--no-schemas", action="store_true",
                        help="DEVELOPMENT AID ONLY: skip schema validation (the run is not a pass)")
    parser.add_argument("--feed-timeout", type=float, default=20.0,
                        help="seconds to wait for the expected feed messages (default 20)")
    parser.add_argument("--durable", help="the feed consumer's durable name (default lifecycle-<run>)")
    parser.add_argument("--keep-consumer", action="store_true", help="leave the durable consumer on the stream")
    args = parser.parse_args()
    try:
        return asyncio.run(lifecycle(args))
    except Failure as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 2 if "schema" in str(e) else 1
    except (OSError, nats.errors.Error) as e:
        print(f"FAILED: cannot talk to NATS at {args.nats_url}: {e!r}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
