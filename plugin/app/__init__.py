"""The use cases: what a person or a scheduler asks for, written once for every way in.

The command line tool and the middlewared services both call these; they differ only in
where their parts come from (a configuration file, or middlewared) and how they print.
"""
