"""The bottom layer: input checks, atomic writes and small shared helpers.

Everything else imports from here; ``core`` imports nothing of the toolkit.
"""
