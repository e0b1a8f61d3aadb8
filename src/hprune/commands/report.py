"""`hprune report RUN_DIR`: the report of one `hprune run` folder, as RUN_DIR/report.html
(one self-contained page) and RUN_DIR/report.md (its figures in RUN_DIR/report_files/)."""


def add_arguments(parser):
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of `hprune run`")


def run(args) -> int:
    from hprune.report.run_page import write_report  # matplotlib

    page, markdown = write_report(args.run_dir)
    print(f"wrote {page} and {markdown}")
    return 0
