"""Real local servers on 127.0.0.1 that tests start, script and inspect."""
