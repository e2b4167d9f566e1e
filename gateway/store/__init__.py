"""The store: the `Store` protocol, its SQLite implementation, the transaction's SQL (`Tx`),
and the schema with its versioned migrations.

Only the composition root picks an implementation (`make_store`); the core speaks to the
`Store` protocol and writes its rows through `Tx`.
"""
