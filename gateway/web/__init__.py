"""The HTTP edge of the core: request reading and error mapping (`http`), the agent API's read
side (`api`, `views`), and the monthly SLA report (`reports`). It imports no adapter.
"""
