"""The API's routes, one router per group, in the order the app includes them (the OpenAPI order)."""

from serving.routes import debug, events, operations, timelines

ROUTERS = (timelines.router, events.router, debug.router, operations.router)
