"""The core: intake, incidents' life cycle, outbox, scheduler, customer texts and the services
adapters receive. It imports no adapter and no HTTP edge; routing decisions come from `routing/`.
"""
