"""Pure routing: country lines, schedules, queue assignment, severities and SLA clocks.

Nothing here imports asyncio, aiohttp, a database or another package of this project, and
nothing reads the clock: every function takes `now` (aware UTC) and configuration values.
"""
