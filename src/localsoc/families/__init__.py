"""Model families: one module each, declared in the method registry (``localsoc.methods``).

A family module says how its models are trained on a site's data, stored (``STORE``: save,
load, the file that marks one, its name in the serving bundle) and asked for estimates with a
spread when served. ``localsoc/methods.py`` documents the interface; ``plsr.py`` is the
smallest example.
"""
