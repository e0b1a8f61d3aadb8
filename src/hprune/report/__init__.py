"""Reports: figures, tables and HTML pages drawn from files that runs wrote."""
