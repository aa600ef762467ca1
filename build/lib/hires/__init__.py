"""hires: neural style transfer and texture synthesis at print scale.

    import hires
    hires.render("photo.jpg", "painting.jpg", "print.tif", size="6000x4500")
    hires.texture("bark.jpg", "bark_8k.tif", size="8192x8192", seamless=True)
"""
from hires.config import Settings
from hires.errors import HiresError
from hires.pipeline import Result, render, texture

__all__ = ["HiresError", "Result", "Settings", "render", "texture"]
__version__ = "0.1.0"
