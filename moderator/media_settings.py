"""Settings for posts with more than one still image: animations, videos and albums (#14).

`limits.media` in the settings file. Every cap is checked from headers before the frames are
decoded, so a bomb costs its header; `decode_budget_ms` bounds what the caps cannot (a slow
codec path), and what was decoded before it ran out is used.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FramePooling = Literal["max", "mean", "attention"]
Container = Literal["mp4", "webm", "matroska", "mov"]
_CONTAINERS: list[Container] = ["mp4", "webm", "matroska", "mov"]


class VideoLimits(BaseModel):
    """Short videos (`video_b64` / `video_url`), decoded with PyAV (FFmpeg)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="Off: a video is listed as a problem only.")
    allowed_containers: list[Container] = Field(
        default_factory=lambda: list(_CONTAINERS),
        description="Containers read. Only these demuxers are ever run on a post's bytes (the "
        "container is recognised from its first bytes and opened by name, never probed).",
    )
    allowed_codecs: list[str] = Field(
        default_factory=lambda: ["h264", "vp8", "vp9", "av1", "mpeg4"],
        description="FFmpeg decoder names of the video streams read.",
    )
    max_bytes: int = Field(default=7 * 1024 * 1024, ge=1024, description="Video file bytes.")
    max_duration_s: float = Field(default=120.0, gt=0, description="From the container header.")
    max_fps: float = Field(default=120.0, gt=0, description="Average frame rate, from headers.")
    max_pixels: int = Field(
        default=3840 * 2160, ge=1, description="Width x height of a frame, from the stream header."
    )
    decode_every_frame_up_to: int = Field(
        default=900,
        ge=1,
        description="A video with more frames (from its headers) decodes its keyframes only, "
        "sampled as any frames: encoders put keyframes at scene cuts, and decoding them costs "
        "a fraction of the whole stream.",
    )


class MediaLimits(BaseModel):
    """How many frames a post may carry and how they are sampled and pooled."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_frames: bool = Field(
        default=True,
        description="Score sampled frames of animated images and videos. False: the first "
        "frame only, as before #14 (later frames are neither scored nor hashed).",
    )
    frames_per_item: int = Field(
        default=8, ge=1, le=64, description="Frames sampled from one animation or video (K)."
    )
    max_frames_per_post: int = Field(
        default=16,
        ge=1,
        le=128,
        description="Frames scored per post over all its images and video (model rows).",
    )
    max_album_images: int = Field(
        default=10, ge=0, le=100, description="Entries of `images` read; more is a problem."
    )
    max_animation_frames: int = Field(
        default=1_000, ge=1, description="Frames of an animated GIF/WebP, from its header."
    )
    max_animation_pixels: int = Field(
        default=50_000_000,
        ge=1,
        description="Canvas pixels x frames decoded from one animation (a frame-count bomb).",
    )
    scene_change: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="Mean absolute difference (0..1) of 16x16 grey thumbnails from the previous "
        "frame that counts as a scene change; such frames are sampled besides the uniform ones.",
    )
    decode_budget_ms: float = Field(
        default=3_000.0, gt=0, description="Decode time per post; frames read by then are used."
    )
    pooling: FramePooling = Field(
        default="max",
        description="How frame scores become the post's: max or mean per category, or "
        "attention (the model's trained frame attention weights each frame; the worker refuses "
        "to start when the served model has none).",
    )
    video: VideoLimits = Field(default_factory=VideoLimits)

    @model_validator(mode="after")
    def _every_item_gets_a_frame(self) -> MediaLimits:
        # The post's image, each album image read, and the video keep one frame each.
        least = self.max_album_images + 2
        if self.max_frames_per_post < least:
            raise ValueError(
                f"max_frames_per_post ({self.max_frames_per_post}) must be at least "
                f"max_album_images + 2 ({least}): every image and the video keep one frame"
            )
        return self
