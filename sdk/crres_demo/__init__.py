"""crres demo material: synthetic CCTV footage made from one real face photo, shipped in the wheel beside the SDK.

Not the runtime: ``import crres_sdk`` never imports this package, and no runtime code path uses it. It imports the
SDK's preprocessing (the template) and OpenCV, never torch. Its users: ``examples/demo.py``, the simulated
cameras of ``crres serve``'s tests and benchmark (``crres_sdk.serve.simulate.demo_frames``, the one importer
inside ``crres_sdk``, lazily), the tests, and ``evaluation`` for its camera model.

Modules: :mod:`.camera` (the camera model: optical blur, read + shot noise, JPEG) and :mod:`.clip` (the
procedural scene and the receding clip, with per-frame ground truth).
"""
