from diplotag.cli import app

app()
