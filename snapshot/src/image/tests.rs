use std::fs::OpenOptions;

use super::*;
use crate::sys::Regs;

fn sample(runs: Vec<PageRun>) -> Manifest {
    Manifest {
        created_unix: 1,
        snaprun_version: "test".into(),
        kernel: "6.x".into(),
        processes: vec![ProcessImage {
            pid: 77,
            ppid: 1,
            pgid: 77,
            sid: 77,
            comm: "x".into(),
            exe: FileRef {
                path: "/bin/x".into(),
                dev: 1,
                ino: 2,
                size: 3,
                mtime_ns: 4,
            },
            creds: Creds {
                uid: [0; 4],
                gid: [0; 4],
                groups: vec![],
                caps: None,
            },
            cwd: "/".into(),
            root: "/".into(),
            umask: 0o22,
            personality: 0,
            rlimits: vec![],
            mm: MmFields::default(),
            vmas: vec![Vma {
                start: 0x10000,
                end: 0x20000,
                prot: 3,
                kind: VmaKind::Anon,
                file: None,
                offset: 0,
                name: String::new(),
                advice: VmaAdvice::default(),
                shmem_inode: 0,
                runs,
            }],
            threads: vec![ThreadImage {
                tid: 77,
                comm: "main".into(),
                regs: Regs::default(),
                xsave: String::new(),
                sigmask: 0,
                pending: vec![],
                altstack: AltStack::default(),
                clear_tid_address: 0,
                robust_list: RobustList::default(),
                rseq: None,
            }],
            sigactions: vec![],
            shared_pending: vec![],
            files: vec![],
            fds: vec![],
            memfds: vec![],
            cuda: None,
        }],
        zombies: vec![],
        attachments: vec![],
    }
}

fn write_sample(dir: &Path) -> Manifest {
    write_bytes(dir, 7)
}

/// `len` bytes that do not compress, from `seed`.
fn noise(seed: u8, len: usize) -> Vec<u8> {
    let mut out = blake3::Hasher::new();
    out.update(&[seed]);
    let mut v = vec![0u8; len];
    out.finalize_xof().fill(&mut v);
    v
}

fn write_bytes(dir: &Path, seed: u8) -> Manifest {
    let mut w = ImageWriter::create(dir).unwrap();
    let a = w.add_at(0x1000, &noise(seed, 4096)).unwrap();
    let b = w.add_at(0x4000, &noise(seed + 2, 8192)).unwrap();
    let m = sample(vec![a, b]);
    w.finish(m.clone()).unwrap();
    m
}

/// The pack files of an image directory.
fn packs(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .collect()
}

#[test]
fn round_trip_verifies_runs() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path());
    let img = Image::open(dir.path()).unwrap();
    let runs = &img.manifest.processes[0].vmas[0].runs;
    let mut buf = Vec::new();
    img.read_run(&runs[1], &mut buf).unwrap();
    assert_eq!(buf, noise(9, 8192));
    assert_eq!(runs[1].vma_offset, 0x4000);
    assert!(runs[1].chunks.iter().all(|c| c.digest.is_some()));
    // Zero bytes are recorded, not stored.
    let mut w = ImageWriter::create(dir.path()).unwrap();
    let z = w.add_at(0, &[0u8; 8192]).unwrap();
    assert!(z.chunks.iter().all(|c| c.digest.is_none()));
    assert_eq!(w.stats().zero_bytes, 8192);
}

#[test]
fn flipped_byte_names_the_chunk() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path());
    for p in packs(dir.path()) {
        let mut data = fs::read(&p).unwrap();
        let n = data.len();
        data[n - 20] ^= 1;
        fs::write(&p, data).unwrap();
    }
    let img = Image::open(dir.path()).unwrap();
    let run = img.manifest.processes[0].vmas[0].runs[1].clone();
    let err = img.read_run(&run, &mut Vec::new()).unwrap_err();
    let msg = err.to_string();
    let digest = run.chunks[0].digest.unwrap().to_string();
    assert!(msg.contains(&digest) && msg.contains("corrupt"), "{msg}");
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
}

#[test]
fn truncated_pack_is_refused_on_read() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path());
    for p in packs(dir.path()) {
        let f = OpenOptions::new().write(true).open(p).unwrap();
        f.set_len(100).unwrap();
    }
    let img = Image::open(dir.path()).unwrap();
    let run = img.manifest.processes[0].vmas[0].runs[0].clone();
    let err = img.read_run(&run, &mut Vec::new()).unwrap_err().to_string();
    assert!(err.contains("corrupt"), "{err}");
}

#[test]
fn edited_manifest_fails_its_checksum() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path());
    let path = dir.path().join(MANIFEST_FILE);
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text.replace("\"pid\": 77", "\"pid\": 78")).unwrap();
    let err = Image::open(dir.path()).err().unwrap().to_string();
    assert!(err.contains("checksum mismatch"), "{err}");
}

#[test]
fn garbled_and_truncated_manifests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path());
    let path = dir.path().join(MANIFEST_FILE);
    let text = fs::read(&path).unwrap();
    fs::write(&path, &text[..text.len() / 2]).unwrap();
    let err = Image::open(dir.path()).err().unwrap().to_string();
    assert!(
        err.contains("corrupt manifest") && err.contains("JSON"),
        "{err}"
    );
    fs::write(&path, b"\x00\x01garbage").unwrap();
    assert!(Image::open(dir.path()).is_err());
}

#[test]
fn other_versions_and_magic_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path());
    let path = dir.path().join(MANIFEST_FILE);
    let text = fs::read_to_string(&path).unwrap();
    fs::write(
        &path,
        text.replace("\"format_version\": 3", "\"format_version\": 9"),
    )
    .unwrap();
    let err = Image::open(dir.path()).err().unwrap();
    assert!(matches!(err, ImageError::Version { found: 9, .. }), "{err}");
    fs::write(&path, text.replace(MAGIC, "something-else")).unwrap();
    assert!(Image::open(dir.path())
        .err()
        .unwrap()
        .to_string()
        .contains("magic"));
}

#[test]
fn missing_manifest_says_not_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let err = Image::open(dir.path()).err().unwrap();
    assert!(matches!(err, ImageError::NoManifest { .. }));
}

#[test]
fn run_whose_chunks_do_not_add_up_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = ImageWriter::create(dir.path()).unwrap();
    let mut bogus = w.add_at(0, &[5u8; 4096]).unwrap();
    bogus.len = 8192;
    w.finish(sample(vec![bogus])).unwrap();
    let err = Image::open(dir.path()).err().unwrap().to_string();
    assert!(err.contains("do not add up"), "{err}");
}

#[test]
fn abandoned_checkpoint_leaves_previous_snapshot_intact() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_sample(dir.path());
    let mut w = ImageWriter::create(dir.path()).unwrap();
    w.add(&[1u8; 4096]).unwrap();
    w.abandon();
    let img = Image::open(dir.path()).unwrap();
    assert_eq!(img.manifest.processes, m.processes);
    let runs = img.manifest.processes[0].vmas[0].runs.clone();
    img.read_run(&runs[0], &mut Vec::new()).unwrap();
    drop(img);
    // A second complete checkpoint of other bytes replaces it, and the
    // replaced snapshot's chunks are collected.
    let m2 = write_bytes(dir.path(), 3);
    assert_eq!(packs(dir.path()).len(), 1);
    let img = Image::open(dir.path()).unwrap();
    let mut buf = Vec::new();
    img.read_run(&m2.processes[0].vmas[0].runs[0], &mut buf)
        .unwrap();
    assert_eq!(buf, noise(3, 4096));
    assert!(img.read_run(&runs[0], &mut buf).is_err());
}

#[test]
fn named_snapshots_round_trip_through_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let name: RefName = "web:v1".parse().unwrap();
    let target = ImageTarget::Store {
        dir: dir.path().to_path_buf(),
        name: name.clone(),
    };
    let mut w = ImageWriter::open(&target, ImageOptions::default()).unwrap();
    let a = w.add_at(0x1000, &[4u8; 4096]).unwrap();
    let m = sample(vec![a]);
    let root = w.finish(m.clone()).unwrap();
    let img = Image::open_target(&target).unwrap();
    assert_eq!(img.root, Some(root));
    assert_eq!(img.label, "web:v1");
    assert_eq!(img.manifest, m);
    let mut buf = Vec::new();
    img.read_run(&m.processes[0].vmas[0].runs[0], &mut buf)
        .unwrap();
    assert_eq!(buf, vec![4u8; 4096]);
    let missing = ImageTarget::Store {
        dir: dir.path().to_path_buf(),
        name: "web:v2".parse().unwrap(),
    };
    let err = Image::open_target(&missing).err().unwrap().to_string();
    assert!(err.contains("no snapshot named web:v2"), "{err}");
}

#[test]
fn threads_must_start_with_the_leader_and_be_distinct() {
    let mut m = sample(vec![]);
    let leader = m.processes[0].threads[0].clone();
    let mut other = leader.clone();
    other.tid = 78;
    m.processes[0].threads = vec![other.clone(), leader.clone()];
    let err = validate(&m).unwrap_err();
    assert!(err.contains("first thread must be the leader"), "{err}");
    m.processes[0].threads = vec![leader.clone(), other.clone(), other];
    let err = validate(&m).unwrap_err();
    assert!(err.contains("repeated thread ids"), "{err}");
    m.processes[0].threads = vec![leader];
    validate(&m).unwrap();
}

#[test]
fn tree_order_and_shared_files_are_checked() {
    let mut m = sample(vec![]);
    let mut child = m.processes[0].clone();
    child.pid = 78;
    child.ppid = 77;
    child.threads[0].tid = 78;
    m.processes.push(child.clone());
    validate(&m).unwrap();
    // A child before its parent.
    m.processes.swap(0, 1);
    let err = validate(&m).unwrap_err();
    assert!(err.contains("does not come before it"), "{err}");
    m.processes.swap(0, 1);
    // A shared file pointing at an fd nobody has.
    m.processes[1].files.push(OpenFile {
        id: 9,
        flags: 0,
        kind: FileKind::Fifo {
            path: "/x".into(),
            capacity: None,
            data: None,
        },
        shared: Some(SharedFile { pid: 77, fd: 5 }),
    });
    let err = validate(&m).unwrap_err();
    assert!(err.contains("shared with pid 77 fd 5"), "{err}");
    m.processes[1].files.clear();
    // A zombie whose parent is not in the tree.
    m.zombies.push(Zombie {
        pid: 90,
        ppid: 12,
        pgid: 90,
        sid: 90,
        exit_status: 0,
    });
    let err = validate(&m).unwrap_err();
    assert!(err.contains("zombie 90"), "{err}");
}

#[test]
fn cuda_state_round_trips_and_is_absent_by_default() {
    let mut m = sample(vec![]);
    let path = Path::new("test-manifest");
    // Without CUDA state the field is not written at all, and a manifest
    // without it reads as a CPU-only process.
    let bytes = envelope_bytes(&m);
    assert!(!String::from_utf8_lossy(&bytes).contains("\"cuda\""));
    assert_eq!(
        parse_envelope(&bytes, path).unwrap().processes[0].cuda,
        None
    );

    m.processes[0].cuda = Some(CudaState {
        checkpointed: true,
        gpus: vec!["GPU-5a4f3c2e-1b0d-4e9f-8a7b-6c5d4e3f2a10".into()],
        driver_api: 13000,
        driver: Some("580.65.06".into()),
        was_suspended: false,
    });
    let bytes = envelope_bytes(&m);
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("\"driver_api\": 13000"), "{text}");
    assert!(!text.contains("was_suspended"), "false is left out: {text}");
    let back = parse_envelope(&bytes, path).unwrap();
    assert_eq!(back, m);
}
