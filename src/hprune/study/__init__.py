"""The user-study web app (`hprune study`): people judge images from several methods.

A study is one SQLite file. `importer` fills it from `hprune generate` folders,
`flow` walks a participant through it, `app` serves it over HTTP, `results` and
`stats` turn the ratings into the paper's table and Figure-1-style chart.
"""
