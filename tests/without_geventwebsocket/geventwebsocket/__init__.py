"""Put this folder first on PYTHONPATH to run a server as if gevent-websocket
were not installed (engineio then takes simple-websocket): importing it fails
as a missing package does. Used by tests/test_realtime_libs.py."""
raise ImportError("gevent-websocket is hidden for this test (tests/without_geventwebsocket)")
