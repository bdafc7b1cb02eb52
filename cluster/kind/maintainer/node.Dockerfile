# The kind node image, built by helpers.backend.kind.maintainer.nodeimage (make cluster-images)
# from the Debian base image and binaries built here from source. It follows kind v0.33.0's
# images/base/Dockerfile (whose files/ folder the build copies in from the kind module), with
# Debian's containerd, runc and CNI plugins in place of kind's own builds. The images kubeadm
# needs are imported afterwards (``ctr images import``) and the result committed.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY files/usr/local/bin/ /usr/local/bin/
# Packages first: kind's /etc files (its containerd config.toml above all) would otherwise
# meet Debian's conffiles and stop dpkg at a prompt.
RUN chmod 755 /usr/local/bin/* \
    && echo "Installing Packages ..." \
    && DEBIAN_FRONTEND=noninteractive clean-install \
      systemd \
      conntrack iptables nftables iproute2 ethtool util-linux mount kmod \
      libseccomp2 pigz e2fsprogs \
      bash ca-certificates curl jq procps \
      containerd runc containernetworking-plugins python3 \
    && find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete \
    && rm -f /lib/systemd/system/multi-user.target.wants/* \
    && rm -f /etc/systemd/system/*.wants/* \
    && rm -f /lib/systemd/system/local-fs.target.wants/* \
    && rm -f /lib/systemd/system/sockets.target.wants/*udev* \
    && rm -f /lib/systemd/system/sockets.target.wants/*initctl* \
    && rm -f /lib/systemd/system/basic.target.wants/* \
    && echo "ReadKMsg=no" >> /etc/systemd/journald.conf \
    && ln -sf /usr/lib/systemd/systemd /sbin/init \
    && ln -sf /usr/bin/containerd /usr/local/bin/containerd \
    && mkdir -p /opt/cni && ln -sfn /usr/lib/cni /opt/cni/bin
COPY files/kind/ /kind/
COPY files/etc/ /etc/
RUN chmod 755 /kind /kind/bin /kind/bin/* \
    && systemctl enable kubelet.service \
    && systemctl enable containerd.service \
    && systemctl enable undo-mount-hacks.service \
    && systemctl mask systemd-binfmt.service \
    && mkdir -p /etc/kubernetes/manifests
RUN ctr oci spec \
        | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
        | jq 'del(.process.rlimits)' \
        > /etc/containerd/cri-base.json
COPY bin/kubeadm bin/kubelet bin/kubectl /usr/bin/
COPY bin/crictl /usr/local/bin/
# The CAP_SYS_RESOURCE-dropping runc wrapper, for pods' privileged containers (containerd's
# BinaryName); the same file Docker runs on the host.
COPY runc-wrap /usr/local/sbin/kflabs-runc-wrap
COPY kind-version /kind/version
COPY manifests/ /kind/manifests/
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]
