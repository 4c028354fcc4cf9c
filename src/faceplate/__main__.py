from faceplate.cli import entry

entry()
