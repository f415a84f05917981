"""kpgen's test and benchmark harness: `kpgen boot-test` and `kpgen bench`.

Apart from the product: the commands users run to make live patches (new, generate, patch,
diff, build, check, snapshot, vm, doctor) never import it. Its guest scripts, test modules,
test patches and benchmark modules ship with the package, so an installed kpgen can boot-test
and benchmark itself as a checkout does.
"""
