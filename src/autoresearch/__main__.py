from autoresearch.cli import app

app(prog_name="autoresearch")
