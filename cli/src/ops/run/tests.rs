use super::*;

#[test]
fn durations() {
    assert_eq!(parse_duration("90").ok(), Some(Duration::from_secs(90)));
    assert_eq!(parse_duration("90s").ok(), Some(Duration::from_secs(90)));
    assert_eq!(parse_duration("2m").ok(), Some(Duration::from_secs(120)));
    assert_eq!(parse_duration("1.5h").ok(), Some(Duration::from_secs(5400)));
    for bad in ["", "m", "5d", "-1", "1e99"] {
        assert!(parse_duration(bad).is_err(), "{bad:?}");
    }
}

fn kernel_initrd(found: Bootable) -> KernelInitrd {
    match found {
        Bootable::KernelInitrd(image) => image,
        other => panic!("not a kernel+initrd: {other:?}"),
    }
}

#[test]
fn images_are_found_by_prefix_kernel_path_or_extension() {
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = dir.path().join("sshd");
    let missing = find_image(&prefix, ImageKind::Detect).expect_err("nothing there");
    assert!(matches!(missing, RunError::NoImage { .. }));
    assert!(missing.to_string().contains("sshd-initrd.img"), "{missing}");
    assert_eq!(missing.category(), ErrorCategory::User);

    fs_err::write(dir.path().join("sshd-kernel"), b"k").expect("write");
    fs_err::write(dir.path().join("sshd-initrd.img"), b"i").expect("write");
    let found = kernel_initrd(find_image(&prefix, ImageKind::Detect).expect("kernel+initrd"));
    assert_eq!(found.cmdline, "");
    fs_err::write(dir.path().join("sshd-cmdline"), b"console=ttyS0\n").expect("write");
    let found = find_image(&dir.path().join("sshd-kernel"), ImageKind::KernelInitrd);
    let found = kernel_initrd(found.expect("by kernel path"));
    assert_eq!(found.cmdline, "console=ttyS0");
    assert_eq!(found.initrd, dir.path().join("sshd-initrd.img"));

    for (name, efi) in [
        ("sshd.iso", false),
        ("sshd-efi.iso", true),
        ("sshd-efi-initrd.iso", true),
        ("sshd-bios.img", false),
        ("sshd-efi.img", true),
        ("sshd.efi", true),
    ] {
        let path = dir.path().join(name);
        fs_err::write(&path, b"x").expect("write");
        let found = find_image(&path, ImageKind::Detect).expect(name);
        assert_eq!(found.wants_uefi(), efi, "{name}: {found:?}");
    }
    let forced = find_image(&dir.path().join("sshd-bios.img"), ImageKind::Iso).expect("iso");
    assert_eq!(forced, Bootable::Iso(dir.path().join("sshd-bios.img")));

    for (name, format, efi) in [
        ("sshd.qcow2", DriveFormat::Qcow2, false),
        ("sshd-efi.qcow2", DriveFormat::Qcow2, true),
        ("sshd.vhd", DriveFormat::Vpc, false),
        ("sshd.vmdk", DriveFormat::Vmdk, false),
        ("sshd.raw", DriveFormat::Raw, false),
    ] {
        let path = dir.path().join(name);
        fs_err::write(&path, b"x").expect("write");
        let found = find_image(&path, ImageKind::Detect).expect(name);
        assert_eq!(found, Bootable::Disk(path.clone(), format));
        assert_eq!(found.wants_uefi(), efi, "{name}");
    }
    let gcp = dir.path().join("sshd.img.tar.gz");
    fs_err::write(&gcp, b"x").expect("write");
    let error = find_image(&gcp, ImageKind::Detect).expect_err("gcp");
    assert!(matches!(error, RunError::NotBootable { .. }), "{error}");
}

#[test]
fn a_prefix_with_a_squashfs_boots_it_and_the_flags_force_a_kind() {
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = dir.path().join("sq");
    fs_err::write(dir.path().join("sq-kernel"), b"k").expect("write");
    let error = find_image(&prefix, ImageKind::KernelSquashfs).expect_err("no squashfs");
    assert!(error.to_string().contains("sq-squashfs.img"), "{error}");
    fs_err::write(dir.path().join("sq-squashfs.img"), b"s").expect("write");
    fs_err::write(dir.path().join("sq-cmdline"), b"console=ttyS0\n").expect("write");
    let expected = Bootable::KernelSquashfs(KernelSquashfs {
        kernel: dir.path().join("sq-kernel"),
        squashfs: dir.path().join("sq-squashfs.img"),
        cmdline: "console=ttyS0".to_owned(),
    });
    assert_eq!(
        find_image(&prefix, ImageKind::Detect).expect("detect"),
        expected
    );
    // With an initrd too, detection picks the squashfs (as LinuxKit); --kernel the initrd.
    fs_err::write(dir.path().join("sq-initrd.img"), b"i").expect("write");
    assert_eq!(
        find_image(&prefix, ImageKind::Detect).expect("detect"),
        expected
    );
    let forced = find_image(&prefix, ImageKind::KernelInitrd).expect("--kernel");
    assert!(matches!(forced, Bootable::KernelInitrd(_)), "{forced:?}");
}

#[test]
fn the_state_dir_keeps_one_mac_and_writes_the_data_iso() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = StateDir::open(Some(&dir.path().join("state"))).expect("state");
    assert!(!state.is_temporary());
    let mac = state.mac_address().expect("mac");
    assert_eq!(mac.len(), 17, "{mac}");
    let first = u8::from_str_radix(&mac[..2], 16).expect("hex");
    assert_eq!(first & 0x03, 0x02, "locally administered unicast: {mac}");
    let again = StateDir::open(Some(&dir.path().join("state"))).expect("state");
    assert_eq!(again.mac_address().expect("mac"), mac);
    fs_err::write(dir.path().join("state/mac-addr"), "nonsense").expect("write");
    assert!(again.mac_address().is_err());

    let iso = state.write_data_iso(b"hello").expect("data.iso");
    let bytes = fs_err::read(&iso).expect("read");
    assert_eq!(&bytes[0x8001..0x8006], b"CD001");
    assert_eq!(
        fs_err::read(state.write_data_iso(b"hello").expect("again")).expect("read"),
        bytes,
        "reproducible"
    );

    let temporary = StateDir::open(None).expect("temporary");
    let path = temporary.path().to_path_buf();
    assert!(temporary.is_temporary() && path.is_dir());
    drop(temporary);
    assert!(!path.exists());
    let mut kept = StateDir::open(None).expect("temporary");
    kept.keep();
    assert!(kept.path().is_dir());
    fs_err::remove_dir_all(kept.path()).expect("clean up");
}

#[test]
fn disks_and_networks_parse_as_linuxkit_spells_them() {
    let disk = parse_disk("data.img").expect("plain path");
    assert_eq!((disk.size.as_deref(), disk.format.as_str()), (None, "raw"));
    let disk = parse_disk("file=/tmp/d.qcow2,size=512M").expect("keys");
    assert_eq!(
        (disk.size.as_deref(), disk.format.as_str()),
        (Some("512M"), "qcow2")
    );
    assert!(parse_disk("d.img,format=vdi").is_err());
    assert!(parse_disk("format=raw").is_err());
    assert!(parse_disk("file=,size=1G").is_err());
    let mut placed = [
        parse_disk("size=1G").expect("no file"),
        parse_disk("size=2G").expect(""),
    ];
    assert_eq!(placed[0].format, "qcow2", "as LinuxKit");
    for (index, disk) in placed.iter_mut().enumerate() {
        disk.place(index, Path::new("/state"));
    }
    assert_eq!(
        placed[0].path.as_deref(),
        Some(Path::new("/state/disk.img"))
    );
    assert_eq!(
        placed[1].path.as_deref(),
        Some(Path::new("/state/disk1.img"))
    );
    assert!(parse_disk("d.img,bogus").is_err());
    assert_eq!(
        parse_networking("user", &["8080:80/udp".to_owned()]).expect("user"),
        Networking::User {
            publish: vec!["hostfwd=udp:127.0.0.1:8080-:80".to_owned()]
        }
    );
    assert_eq!(
        parse_networking("none", &[]).expect("none"),
        Networking::None
    );
    assert!(parse_networking("none", &["1:2".to_owned()]).is_err());
    assert_eq!(
        parse_networking("tap", &[]).expect("tap"),
        Networking::Tap {
            ifname: "tap0".into()
        }
    );
    assert_eq!(
        parse_networking("bridge,br1", &[]).expect("bridge"),
        Networking::Bridge { name: "br1".into() }
    );
    assert!(parse_networking("tap,tap3", &["1:2".to_owned()]).is_err());
    assert!(parse_networking("tap,", &[]).is_err());
    assert!(parse_networking("vde", &[]).is_err());
    assert!(parse_networking("user", &["80".to_owned()]).is_err());
    assert!(parse_networking("user", &["1:2/sctp".to_owned()]).is_err());
}

#[test]
fn qemu_arguments() {
    let request = QemuRequest {
        image: Bootable::KernelInitrd(KernelInitrd {
            kernel: "k".into(),
            initrd: "i".into(),
            cmdline: "console=ttyS0".into(),
        }),
        firmware: None,
        qemu: "qemu-system-x86_64".into(),
        cpus: 2,
        mem_mib: 512,
        accel: "tcg".into(),
        until: None,
        timeout: None,
        console_log: None,
        disks: vec![parse_disk("file=d.qcow2,size=2G").expect("disk")],
        networking: parse_networking("default", &["2222:22".to_owned()]).expect("net"),
        mac: Some("02:00:00:00:00:01".to_owned()),
        data_iso: None,
        state: "/s".into(),
        detached: false,
        gui: false,
        arch: Arch::Amd64,
        echo: None,
    };
    assert_eq!(
        qemu_args(&request).join(" "),
        "-accel tcg -smp 2 -m 512 -nographic -no-reboot -pidfile /s/qemu.pid -kernel k \
         -initrd i -append console=ttyS0 -drive file=d.qcow2,format=qcow2,index=0,media=disk \
         -netdev user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22 -device \
         virtio-net-pci,netdev=net0,mac=02:00:00:00:00:01"
    );
    let disk = QemuRequest {
        image: Bootable::Disk("x-efi.qcow2".into(), DriveFormat::Qcow2),
        firmware: Some("/ovmf.fd".into()),
        networking: Networking::None,
        data_iso: Some("/s/data.iso".into()),
        ..request.clone()
    };
    assert_eq!(
        qemu_args(&disk).join(" "),
        "-accel tcg -smp 2 -m 512 -nographic -no-reboot -pidfile /s/qemu.pid -bios /ovmf.fd \
         -drive file=x-efi.qcow2,format=qcow2,index=0,media=disk -drive \
         file=d.qcow2,format=qcow2,index=1,media=disk -drive \
         file=/s/data.iso,format=raw,media=cdrom,readonly=on -nic none"
    );
    let squashfs = QemuRequest {
        image: Bootable::KernelSquashfs(KernelSquashfs {
            kernel: "p-kernel".into(),
            squashfs: "p-squashfs.img".into(),
            cmdline: "console=ttyS0".into(),
        }),
        disks: Vec::new(),
        networking: Networking::None,
        detached: true,
        ..request
    };
    assert_eq!(
        qemu_args(&squashfs).join(" "),
        "-accel tcg -smp 2 -m 512 -display none -monitor none -serial file:/s/console.log \
         -daemonize -no-reboot -pidfile /s/qemu.pid -kernel p-kernel -append console=ttyS0 \
         root=/dev/sda -drive file=p-squashfs.img,format=raw,index=0,media=disk -nic none"
    );
}

#[test]
fn a_missing_qemu_is_an_environment_error_naming_the_package() {
    let request = QemuRequest {
        image: Bootable::KernelInitrd(KernelInitrd {
            kernel: "k".into(),
            initrd: "i".into(),
            cmdline: String::new(),
        }),
        firmware: None,
        qemu: "/nonexistent/qemu-system-x86_64".into(),
        cpus: 1,
        mem_mib: 256,
        accel: "tcg".into(),
        until: None,
        timeout: Some(Duration::from_secs(1)),
        console_log: None,
        disks: Vec::new(),
        networking: Networking::None,
        mac: None,
        data_iso: None,
        state: std::env::temp_dir(),
        detached: false,
        gui: false,
        arch: Arch::Amd64,
        echo: None,
    };
    let error = run_qemu(&request).expect_err("no qemu");
    assert_eq!(error.category(), ErrorCategory::Environment);
    assert!(error.to_string().contains("qemu-system-x86"), "{error}");
}

#[test]
fn qemu_arguments_for_tap_bridge_gui_and_arm64() {
    let request = QemuRequest {
        image: Bootable::KernelInitrd(KernelInitrd {
            kernel: "k".into(),
            initrd: "i".into(),
            cmdline: String::new(),
        }),
        firmware: None,
        qemu: Arch::Arm64.qemu().into(),
        cpus: 1,
        mem_mib: 1024,
        accel: "tcg".into(),
        until: None,
        timeout: None,
        console_log: None,
        disks: Vec::new(),
        networking: parse_networking("tap,tap7", &[]).expect("tap"),
        mac: Some("02:00:00:00:00:02".to_owned()),
        data_iso: None,
        state: "/s".into(),
        detached: false,
        gui: true,
        arch: Arch::Arm64,
        echo: None,
    };
    assert_eq!(
        qemu_args(&request).join(" "),
        "-accel tcg -smp 1 -m 1024 -machine virt -cpu max -serial mon:stdio -no-reboot \
         -pidfile /s/qemu.pid -kernel k -initrd i -netdev \
         tap,id=net0,ifname=tap7,script=no,downscript=no -device \
         virtio-net-pci,netdev=net0,mac=02:00:00:00:00:02"
    );
    let bridge = QemuRequest {
        networking: parse_networking("bridge", &[]).expect("bridge"),
        gui: false,
        arch: Arch::Amd64,
        ..request
    };
    let args = qemu_args(&bridge);
    assert!(args.contains(&"-nographic".to_owned()), "{args:?}");
    assert!(
        args.contains(&"bridge,id=net0,br=virbr0".to_owned()),
        "{args:?}"
    );
    assert!(!args.contains(&"-machine".to_owned()), "{args:?}");
    assert_eq!(
        shell_line(
            "qemu",
            &[
                "-append".into(),
                "console=ttyS0 quiet".into(),
                "it's".into()
            ]
        ),
        "qemu -append 'console=ttyS0 quiet' 'it'\\''s'"
    );
    assert_eq!(Arch::parse(Some("aarch64")).expect("arm64"), Arch::Arm64);
    assert_eq!(Arch::parse(Some("x86_64")).expect("amd64"), Arch::Amd64);
    assert!(Arch::parse(Some("riscv64")).is_err());
}
