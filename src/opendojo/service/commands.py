"""The ``dojo serve``, ``dojo service ...`` and ``dojo jobs ...`` subcommands (parsers and handlers).

``serve`` runs the server; ``service`` administers a data folder directly through the database
(tenants, datasets); ``jobs`` is the client, talking to a server over HTTP.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from opendojo.errors import EXIT_FAILURE, EXIT_USAGE, UsageError, check_positive, printable

_TABLE = ("id", "name", "state", "priority", "steps_done", "steps", "precision", "message")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``serve``, ``service`` and ``jobs`` on the ``dojo`` parser."""
    _add_serve(sub)
    _add_service(sub)
    _add_jobs(sub)


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, help="service data folder (default ~/.opendojo/service)")
    p.add_argument("--db", default=None, help="database URL (default sqlite:///DIR/service.db)")


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="run the training service (API under /v1, docs at /docs)")
    _data_args(p)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8700)
    p.add_argument("--slots", type=int, default=1, help="jobs that run at once")
    p.add_argument("--executor", default="local", help="where jobs run: local (processes here) or ray")
    p.add_argument("--ray-address", default=None,
                   help="with --executor ray: the Ray head's job API, e.g. http://HEAD:8265 "
                        "(default $RAY_ADDRESS)")
    p.add_argument("--grace", type=float, default=120.0, help="seconds from SIGTERM to SIGKILL of a job")
    p.set_defaults(func=_guard(_cmd_serve))


def _add_service(sub) -> None:
    p = sub.add_parser("service", help="administer a service data folder: tenants, datasets")
    ssub = p.add_subparsers(dest="service_command", metavar="ACTION", required=True)
    t = ssub.add_parser("tenant", help="add, list, disable, rotate tenants")
    tsub = t.add_subparsers(dest="tenant_command", metavar="ACTION", required=True)
    a = tsub.add_parser("add", help="create a tenant; prints its token once")
    a.add_argument("name")
    a.add_argument("--max-running", type=int, default=1)
    a.add_argument("--max-priority", type=int, default=10)
    a.add_argument("--quota-tile-hours", type=float, default=None)
    for name in ("list", "disable", "rotate"):
        q = tsub.add_parser(name, help=f"{name} tenant(s)")
        if name != "list":
            q.add_argument("name")
    d = ssub.add_parser("dataset", help="register a dataset by name")
    dsub = d.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    q = dsub.add_parser("add", help="offer the dataset at PATH to jobs as NAME")
    q.add_argument("name")
    q.add_argument("path")
    dsub.add_parser("list", help="list registered datasets")
    for q in (*tsub.choices.values(), *dsub.choices.values()):
        _data_args(q)
    p.set_defaults(func=_guard(_cmd_service))


def _client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", default=None, help="server URL (default $DOJO_SERVER or http://127.0.0.1:8700)")
    p.add_argument("--token", default=None, help="bearer token (default $DOJO_TOKEN)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _job_fields(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="training config, TOML")
    p.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE")
    p.add_argument("--precision", default=None)
    p.add_argument("--steps", type=int, default=None)


def _add_jobs(sub) -> None:
    p = sub.add_parser("jobs", help="the service's client: submit, list, show, logs, cancel, quote, download")
    jsub = p.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    s = jsub.add_parser("submit", help="submit a training job; prints its id on the last line")
    _job_fields(s)
    s.add_argument("--priority", type=int, default=None)
    s.add_argument("--name", default=None)
    s.add_argument("--wait", action="store_true", help="wait until it ends; exit 0 only if it succeeded")
    jsub.add_parser("list", help="your jobs")
    for name in ("show", "cancel"):
        jsub.add_parser(name, help=f"{name} a job").add_argument("id")
    q = jsub.add_parser("logs", help="a job's log")
    q.add_argument("id")
    q.add_argument("--follow", action="store_true", help="stream until the job ends")
    q = jsub.add_parser("quote", help="predicted time, device-hours, H100-equivalent-hours and price")
    _job_fields(q)
    q.add_argument("--system", default="dojo-exapod,h100-cluster-1k", help="comma-separated systems")
    q = jsub.add_parser("download", help="download a job's artifacts")
    q.add_argument("id")
    q.add_argument("--out", required=True)
    jsub.add_parser("usage", help="usage per tenant (yours; every tenant's with the admin token)")
    for q in jsub.choices.values():
        _client_args(q)
    p.set_defaults(func=_guard(_cmd_jobs))


def _guard(handler):
    """A handler whose user mistakes print one line and exit 2, and server errors exit 1."""

    def run(args: argparse.Namespace) -> int:
        from opendojo.service.client import ApiFailure

        try:
            return handler(args)
        except UsageError as e:
            print(f"dojo {args.command}: error: {printable(e)}", file=sys.stderr)
            return EXIT_USAGE
        except ApiFailure as e:
            print(f"dojo {args.command}: {printable(e)}", file=sys.stderr)
            return EXIT_USAGE if 400 <= e.status < 500 else EXIT_FAILURE
        except FileNotFoundError as e:
            print(f"dojo {args.command}: error: {printable(e)}", file=sys.stderr)
            return EXIT_USAGE

    return run


def _cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from opendojo.errors import check_choice, check_int
    from opendojo.service.executor import EXECUTORS
    from opendojo.service.server import data_dir_of, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    check_positive("--slots", args.slots)
    check_int("--port", args.port, low=0, high=65535)
    check_choice("--executor", args.executor, EXECUTORS)
    if not args.grace > 0:
        raise UsageError(f"--grace: got {args.grace}; allowed: seconds > 0")
    serve(data_dir_of(args.data_dir), db=args.db, host=args.host, port=args.port, slots=args.slots,
          executor=args.executor, grace_s=args.grace, ray_address=args.ray_address)
    return 0


def _cmd_service(args: argparse.Namespace) -> int:
    from opendojo.service.server import data_dir_of
    from opendojo.service.store import default_url, open_store

    data_dir = data_dir_of(args.data_dir)
    store = open_store(args.db or default_url(data_dir))
    if args.service_command == "dataset":
        if args.dataset_command == "list":
            for name, path in store.dataset_paths().items():
                print(f"{printable(name)}\t{printable(path)}")
            return 0
        path = Path(args.path).expanduser().resolve()
        if not path.exists():
            raise UsageError(f"PATH: {str(path)!r} does not exist")
        store.add_dataset(_name("NAME", args.name), str(path))
        print(f"dataset {args.name} -> {path}")
        return 0
    return _cmd_tenant(args, store)


def _name(argument: str, value: str) -> str:
    if not (0 < len(value) <= 64) or not all(c.isalnum() or c in "-_." for c in value):
        raise UsageError(f"{argument}: got {value!r}; allowed: 1-64 letters, digits, '-', '_' or '.'")
    return value


def _cmd_tenant(args: argparse.Namespace, store) -> int:
    cmd = args.tenant_command
    if cmd == "add":
        check_positive("--max-running", args.max_running)
        from opendojo.errors import check_int

        check_int("--max-priority", args.max_priority, low=0)
        if args.quota_tile_hours is not None and not args.quota_tile_hours >= 0:
            raise UsageError(f"--quota-tile-hours: got {args.quota_tile_hours}; allowed: a number >= 0")
        print(store.add_tenant(_name("NAME", args.name), max_running=args.max_running,
                               max_priority=args.max_priority, quota=args.quota_tile_hours))
    elif cmd == "list":
        print(f"{'name':<20} {'disabled':>8} {'max-running':>11} {'max-priority':>12} {'quota tile-h':>12}")
        for t in store.list_tenants():
            quota = "-" if t["quota_tile_hours"] is None else f"{t['quota_tile_hours']:.6g}"
            print(f"{t['name']:<20} {str(t['disabled']):>8} {t['max_running']:>11} {t['max_priority']:>12} "
                  f"{quota:>12}")
    elif cmd == "disable":
        store.disable_tenant(args.name)
        print(f"tenant {args.name} disabled")
    else:
        print(store.rotate_tenant(args.name))
    return 0


def _read_config(path: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"CONFIG: {path!r} is not a file")
    return p.read_text()


def _print_jobs(rows: list[dict], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'id':<18} {'name':<16} {'state':<10} {'prio':>4} {'steps':>11} {'precision':<9} message")
    for r in rows:
        steps = f"{r['steps_done']}/{r['steps']}"
        print(f"{r['id']:<18} {printable(r['name'])[:16]:<16} {r['state']:<10} {r['priority']:>4} "
              f"{steps:>11} {r['precision']:<9} {printable(r['message'])[:60]}")


def _cmd_jobs(args: argparse.Namespace) -> int:
    from opendojo.service.client import Client

    client = Client(args.server, args.token)
    cmd = args.jobs_command
    if cmd == "submit":
        return _submit(client, args)
    if cmd == "quote":
        systems = [s.strip() for s in args.system.split(",") if s.strip()]
        rows = client.quote(_read_config(args.config), systems, overrides=args.set, steps=args.steps,
                            precision=args.precision)
        print(json.dumps(rows, indent=1) if args.json else _quote_table(rows))
    elif cmd == "list":
        _print_jobs(client.jobs(), args.json)
    elif cmd in ("show", "cancel"):
        job = client.show(args.id) if cmd == "show" else client.cancel(args.id)
        print(json.dumps(job, indent=1) if args.json else "\n".join(
            f"{k:>12}: {printable(v)}" for k, v in job.items()))
    elif cmd == "logs":
        for chunk in client.logs(args.id, follow=args.follow):
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
    elif cmd == "download":
        for path in client.download(args.id, Path(args.out)):
            print(path)
    else:
        print(json.dumps(client.usage(), indent=1))
    return 0


def _submit(client, args: argparse.Namespace) -> int:
    from opendojo.service.schema import FINAL_STATES, SUCCEEDED

    job = client.submit(_read_config(args.config), overrides=args.set, steps=args.steps,
                        precision=args.precision, priority=args.priority, name=args.name)
    if args.json:
        print(json.dumps(job, indent=1))
    if args.wait:
        while job["state"] not in FINAL_STATES:
            time.sleep(1.0)
            job = client.show(job["id"])
        print(f"{job['state']}: {printable(job['message'])}", file=sys.stderr)
    print(job["id"])
    return 0 if not args.wait or job["state"] == SUCCEEDED else EXIT_FAILURE


def _quote_table(rows: list[dict]) -> str:
    lines = [f"{'system':<18} {'devices':>7} {'step':>10} {'total':>10} {'device-hours':>14} "
             f"{'H100-eq-hours':>14} {'price USD':>10}"]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['system']:<18} cannot place this job: {r['error']}")
            continue
        eq = "-" if r["h100_equivalent_hours"] is None else f"{r['h100_equivalent_hours']:.4g}"
        price = "-" if r["price_usd"] is None else f"{r['price_usd']:.4g}" + ("*" if r["price_is_assumption"]
                                                                             else "")
        lines.append(f"{r['system']:<18} {r['devices']:>7} {r['step_time_s']:>9.3g}s {r['total_s']:>9.3g}s "
                     f"{r['device_hours']:>9.4g} {r['device_hours_unit'][:4]} {eq:>14} {price:>10}")
    if rows and "h100_equivalent_definition" in rows[0]:
        lines.append(f"H100-equivalent: {rows[0]['h100_equivalent_definition']}")
    lines.append("* price marked as an assumption in the price table (opendojo/service/prices.toml)")
    return "\n".join(lines)
