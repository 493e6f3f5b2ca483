"""The pure evolutionary core: DNA, mutations, selection math and records.

Plain data and plain functions: nothing here imports torch or touches the filesystem
(tests/test_purity.py checks it), so the tests of this layer run in milliseconds and read
like the papers.
"""
