"""`hprune study`: the user-study web app.

    hprune study create --from runs/gen-original runs/gen-hpp --out study.db
    hprune study serve study.db --host 127.0.0.1 --port 8000
    hprune study results study.db --reference gen-original

`create` imports `hprune generate` folders (same prompts and seeds) into one SQLite
file; `serve` runs the participant pages and the admin results (token printed, or
taken from HPRUNE_STUDY_ADMIN_TOKEN); `results` prints the results table.
"""

from __future__ import annotations

OUTPUTS = {}  # `create --out` is a file, checked by the importer itself


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="study_command", metavar="SUBCOMMAND", required=True,
                                help="create, serve or results")
    fmt = parser.formatter_class
    create = sub.add_parser("create", help="import generation folders into a new study file", formatter_class=fmt,
                            description="import `hprune generate` folders (same prompts and seeds) into a study file")
    create.add_argument("--from", dest="folders", nargs="+", required=True, metavar="GEN_DIR",
                        help="one `hprune generate` folder per method")
    create.add_argument("--out", required=True, help="the study file to write (SQLite), e.g. study.db")
    create.add_argument("--names", nargs="+", default=None, help="method names, one per folder (default: folder names)")
    create.add_argument("--reference", default=None, help="the method others are compared to (default: the first)")
    create.add_argument("--per-participant", type=int, default=None,
                        help="prompt sets shown to each participant, drawn at random (default: all)")
    serve = sub.add_parser("serve", help="serve the study to participants and the admin", formatter_class=fmt,
                           description="serve the participant pages and the admin results")
    serve.add_argument("study", metavar="STUDY", help="the study file")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve.add_argument("--workers", type=int, default=1, help="server worker processes")
    results = sub.add_parser("results", help="print the results table", formatter_class=fmt,
                             description="print MOS with 95% CI, best-pick share and drop per method")
    results.add_argument("study", metavar="STUDY", help="the study file")
    results.add_argument("--reference", default=None, help="the method others are compared to (default: the study's)")


def run(args) -> int:
    return {"create": create, "serve": serve, "results": results}[args.study_command](args)


def create(args) -> int:
    from hprune.study.importer import create_study

    summary = create_study(args.folders, args.out, args.names, args.reference, args.per_participant)
    print(f"{args.out}: {summary['prompts']} prompt sets x {len(summary['methods'])} methods "
          f"({', '.join(summary['methods'])}; reference {summary['reference']})")
    return 0


def serve(args) -> int:
    from hprune.core.errors import HpruneError
    from hprune.study import db
    from hprune.study.server import serve as serve_study

    db.check_study(args.study)
    if not 0 <= args.port <= 65535:  # 0: any free port
        raise HpruneError(f"--port must be between 0 (any free port) and 65535, got {args.port}.")
    serve_study(args.study, args.host, args.port, args.workers)
    return 0


def results(args) -> int:
    from hprune.study import db
    from hprune.study.results import format_table, summarise

    db.check_study(args.study)
    conn = db.connect(args.study)
    try:
        print(format_table(summarise(conn, args.reference)))
    finally:
        conn.close()
    return 0
