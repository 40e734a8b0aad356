from normdsl.cli import run

run()
