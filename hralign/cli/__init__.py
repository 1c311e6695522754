"""Thin click commands: parse, call the library, print. The library never imports this package."""
