"""Swap quality metrics, as the face-swap literature reports them (definitions: the README's metrics table).

    pose.py        head pose (yaw, pitch, roll) from 68 landmarks with solvePnP; pose error
    expression.py  eye and mouth landmark error after similarity alignment
    fidelity.py    changed-face test, PSNR outside the face masks
    temporal.py    flicker inside the face region
    report.py      per-frame records -> report dict -> table and plot

Everything here is plain numpy/OpenCV on one frame (or a pair of frames);
``faceswap.stages.evaluate`` does the decoding, face finding and Ray wiring.
"""
