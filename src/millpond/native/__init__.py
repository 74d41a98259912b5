"""millpond's native protocol: length-prefixed msgpack frames over TCP, pipelined by request id.

:mod:`frames` is the wire format, :mod:`errors` the error classes that may cross it,
:mod:`ops` the daemon's whitelist of operations, :mod:`server` the daemon's listener,
:mod:`client` the synchronous client (``millpond.connect("millpond://host:port")``) and
:mod:`proxies` its Queue, FifoQueue, Topic and Subscription objects; :mod:`aio` and
:mod:`aio_proxies` the same for asyncio, as coroutines.
"""
