"""From a built module to the machines that run it: the metadata a module carries (`kpgen info`),
its signature, loading and unloading it on a running kernel (`kpgen load|unload|list`), installing
it for boot (`kpgen install|uninstall`) and packaging it as a .deb (`kpgen package`).

One module per job: metadata (what a module says of itself), signature (reading and making module
signatures, with der for the PKCS#7 inside them), kmsg (the kernel log since a point), state (the
live patches of a running kernel, as sysfs and /proc show them), live (load and unload), layout
(where an installed release's files go), install, deb, and show (the lines `list` and `info`
print).
"""
