"""The set-up QR code, drawn on the server as inline SVG by the qrcode library (no
third-party QR service, nothing for the CSP to allow)."""

from __future__ import annotations

from markupsafe import Markup

from ..core import messages
from ..core.config import setting
from ..factors import totp

SVG_NS = "http://www.w3.org/2000/svg"


def qr_svg(data: str, *, label: str) -> Markup:
    # Imported here: only set-up pages draw a QR code, and qrcode pulls in Pillow where
    # it is installed (about 4 MB a worker that a sign-in or a gateway check never uses).
    import qrcode
    import qrcode.constants
    import qrcode.image.svg
    from qrcode.compat.etree import ET  # lxml's where installed, else the standard one

    qr = qrcode.QRCode(
        error_correction=qrcode.constants.ERROR_CORRECT_M,
        border=4,
        image_factory=qrcode.image.svg.SvgPathFillImage,
    )
    qr.add_data(data)
    qr.make(fit=True)
    root = qr.make_image().get_image()
    # Sized by the stylesheet, not in millimetres; announced as one image.
    for attribute in ("width", "height"):
        root.attrib.pop(attribute, None)
    root.set("role", "img")
    root.set("aria-label", label)
    root.set("class", "qr")
    title = ET.Element("title")
    title.text = label
    root.insert(0, title)
    # ElementTree escapes the label and the data: the markup is ours, safe to embed.
    # The title is made by the same ElementTree as the image (qrcode's: lxml when it is
    # installed, as a CalDAV client brings it), or insert() refuses it.
    return Markup(ET.tostring(root, encoding="unicode"))  # noqa: S704


def secret_and_qr(secret: str, username: str, *, new_app: bool = False) -> dict:
    """What `partials/secret_and_qr.html` shows for a secret being set up: the key in
    groups of four, the QR code of its otpauth:// URI, and the account as the app will
    name it (the issuer is never translated)."""
    return {
        "secret": totp.grouped(secret),
        "qr_svg": qr_svg(
            totp.provisioning_uri(secret, username),
            label=messages.text("qr_label_new" if new_app else "qr_label", username=username),
        ),
        "issuer": setting("MFA_ISSUER"),
        "username": username,
    }
