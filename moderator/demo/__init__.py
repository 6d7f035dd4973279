"""The embedded demo: a whole stack on one machine, a sample stream and a readable summary."""
