"""PySpark job modules. Each has main(argv) that parses arguments and run(args) -> dict."""
