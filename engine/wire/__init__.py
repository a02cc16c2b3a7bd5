"""The engine's wire: everything both ends of the engine process boundary share.

- :mod:`engine.wire.protocol`: the message format (JSON lines; requests, responses, errors, notifications);
- :mod:`engine.wire.events`: the typed run events that travel as notifications;
- :mod:`engine.wire.dispatch`: the one registry of the protocol's methods and their parameters, which the server
  dispatches through and the client checks its calls against, so a method is declared in one place;
- :mod:`engine.wire.client`: :class:`~engine.wire.client.EngineClient`, the front ends' side of it.

Why one package: the two sides must agree on names, parameters and error types, and used to keep a copy each.
Light on purpose (the standard library and :mod:`engine.errors` only): the TUI imports it and must open fast,
so nothing here imports the engine's heavy parts; the server that *runs* methods lives in :mod:`engine.server`.
Nothing is re-exported here: ``from engine.wire.client import EngineClient`` and so on.
"""
