"""Plug-ins that put hralign encoders into other libraries' policies (LeRobot)."""
