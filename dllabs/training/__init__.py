"""Training: the Keras backend (``backend``), the device and seeds (``devices``), several processes
(``cluster``), the one fit helper (``fit``) with its callbacks (``callbacks``), and resuming a
killed run (``resume``).
"""
