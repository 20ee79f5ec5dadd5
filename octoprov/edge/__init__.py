"""A site's edge: its boot services without database access (``octoprov pxe --site NAME --central URL``).

It answers its machines from answers the centre prepared (``answers``), serves boot files from a bounded,
verified cache (``files``), and reports what it served when the centre can be reached (``served``); it talks
to the central API only (``central``), with an API token read from a file.
"""
