"""Test cases, one module per part of the catalogue.

Importing a module registers its cases with `h2spec.registry`; the
order of registration inside a section gives the case numbers.
"""
