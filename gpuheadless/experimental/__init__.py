"""Mirrors ``ilastik.experimental``: change the import line of a script, keep the rest."""
