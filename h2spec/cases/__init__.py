"""Test cases, one module per part of the catalogue.

Importing a module registers its cases with `h2spec.catalogue`; the
order of registration inside a section gives the case numbers.
"""
