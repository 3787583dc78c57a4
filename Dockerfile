# The node agent image, buildable offline: hack/image.sh builds the static
# Go binaries on the host (CGO_ENABLED=0) and gathers a minimal rootfs with
# Debian's iptables (xtables-nft-multi, xtables-legacy-multi, their shared
# libraries and extension modules), then `docker build` copies them into
# an empty image. Nothing is pulled.
#
# Why iptables is in the image: the capability probe programs each backend
# in a throw-away netns and sends a real connection through it; the
# iptables-nft / iptables-legacy backends exec those binaries. The plugin
# on the host uses the host's binaries, so the agent also reports an
# iptables backend as failed when the host lacks its binary
# (agent.WithHostBinaries). nftables needs no binary (netlink).
#
# Where golang and debian images can be pulled, Dockerfile.multistage does
# the same in build stages.
FROM scratch
COPY _output/image/rootfs/ /
COPY _output/image/node-agent /opt/authbridge/bin/node-agent
COPY _output/image/authbridge-cni /opt/authbridge/bin/authbridge-cni
ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin
USER 0
ENTRYPOINT ["/opt/authbridge/bin/node-agent"]
CMD ["run"]
