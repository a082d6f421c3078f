"""cloud-init's own metadata readers, run inside an instance's namespace by the tests.

``python -m tests.lib.cloudinit_probe SITE_PACKAGES URL MAC``: imports Debian's
cloud-init from SITE_PACKAGES (unpacked by tools/fetch-cloud-init.sh), reads
URL with its EC2 reader (ec2.get_instance_metadata/userdata, the crawl its
DataSourceEc2 does) and its OpenStack reader (MetadataReader.read_v2, what
DataSourceOpenStack does), converts network_data.json with convert_net_json
and renders it as /etc/network/interfaces (the ENI renderer), and prints all
of it as one JSON object. Nothing of cloud-init is changed; MAC names eth0
(cloud-init would read it from the NICs).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile


def main(site: str, url: str, mac: str) -> None:
    for proxy in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        os.environ.pop(proxy, None)
    sys.path.insert(0, site)
    from cloudinit.net import eni, network_state
    from cloudinit.sources.helpers import ec2, openstack

    ec2_md = ec2.get_instance_metadata("2009-04-04", url, timeout=5, retries=0)
    ec2_ud = ec2.get_instance_userdata("2009-04-04", url, timeout=5, retries=0)
    reader = openstack.MetadataReader(url, timeout=5, retries=0)
    version = reader._find_working_version()  # noqa: SLF001 - which version it settles on
    result = reader.read_v2()
    netcfg = openstack.convert_net_json(result.get("networkdata"), known_macs={mac: "eth0"})
    state = network_state.parse_net_config_data(netcfg)
    with tempfile.TemporaryDirectory() as target:
        renderer = eni.Renderer({"eni_path": "interfaces", "links_path_prefix": None})
        renderer.render_network_state(state, target=target)
        with open(os.path.join(target, "interfaces")) as handle:
            interfaces = handle.read()
    metadata = result["metadata"]
    metadata.pop("random_seed", None)  # bytes after read_v2 decoded it
    print(
        json.dumps(
            {
                "ec2_metadata": ec2_md,
                "ec2_userdata": ec2_ud.decode() if isinstance(ec2_ud, bytes) else ec2_ud,
                "openstack_version": version,
                "metadata": metadata,
                "userdata": result["userdata"].decode()
                if isinstance(result["userdata"], bytes)
                else result["userdata"],
                "vendordata": result.get("vendordata"),
                "networkdata": result.get("networkdata"),
                "ec2_via_openstack": result.get("ec2-metadata"),
                "network_config": netcfg,
                "interfaces": interfaces,
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:4])
