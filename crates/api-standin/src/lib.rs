//! A Messages-API stand-in served on 127.0.0.1 with scripted answers, for tests of the real CLI.
