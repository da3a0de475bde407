"""The scripted HTTP stand-in lives in :mod:`alertkit.testing.stand_in` (users test their own
backends against it too); the tests import it from here as before."""

from alertkit.testing.stand_in import Reply, Request, Script, ScriptedServer, free_port

__all__ = ["Reply", "Request", "Script", "ScriptedServer", "free_port"]
