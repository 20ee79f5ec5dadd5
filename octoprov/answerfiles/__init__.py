"""Answer files: what an installer is told, rendered per task from the templates in ``answers/``.

One concept per module: ``render`` (the Jinja environments and each language's escaping),
``languages``, ``passwords``, ``share`` (the WinPE share and the URLs machines call),
``inputs`` (a task's data, secrets decrypted), ``autounattend``, ``startnet``, ``kickstart``,
``samba`` (the share's smb.conf) and ``files`` (what the per-task file URL serves).
"""
