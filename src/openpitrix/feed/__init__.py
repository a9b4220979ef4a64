"""The event feed over HTTP: who may follow which events, and the SSE answers job streams share."""
