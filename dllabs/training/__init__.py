"""Training: the Keras backend (``backend``), the device and seeds (``devices``), several processes
(``cluster``), the one fit helper (``fit``) with its callbacks (``callbacks``), resuming a killed
run (``resume``), and what a Keras stage does first (``startup``).
"""
