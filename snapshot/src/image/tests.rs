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
        }],
        pages: PagesFile {
            file: String::new(),
            size: 0,
        },
    }
}

fn write_sample(dir: &Path) -> Manifest {
    let mut w = ImageWriter::create(dir).unwrap();
    let mut a = w.add(&[7u8; 4096]).unwrap();
    a.vma_offset = 0x1000;
    let mut b = w.add(&[9u8; 8192]).unwrap();
    b.vma_offset = 0x4000;
    let m = sample(vec![a, b]);
    w.finish(m.clone()).unwrap();
    m
}

#[test]
fn round_trip_verifies_runs() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path());
    let img = Image::open(dir.path()).unwrap();
    let runs = &img.manifest.processes[0].vmas[0].runs;
    let mut buf = Vec::new();
    img.read_run(&runs[1], &mut buf).unwrap();
    assert_eq!(buf, vec![9u8; 8192]);
    assert_eq!(img.manifest.pages.size, 12288);
}

#[test]
fn flipped_byte_names_the_chunk() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path());
    let img = Image::open(dir.path()).unwrap();
    let pages = dir.path().join(&img.manifest.pages.file);
    let mut data = fs::read(&pages).unwrap();
    data[5000] ^= 1;
    fs::write(&pages, data).unwrap();
    let run = img.manifest.processes[0].vmas[0].runs[1].clone();
    let err = img.read_run(&run, &mut Vec::new()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&run.digest) && msg.contains("corrupt chunk"),
        "{msg}"
    );
}

#[test]
fn truncated_pages_file_is_refused_on_open() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path());
    let name = Image::open(dir.path()).unwrap().manifest.pages.file;
    let f = OpenOptions::new()
        .write(true)
        .open(dir.path().join(name))
        .unwrap();
    f.set_len(100).unwrap();
    let err = Image::open(dir.path()).err().unwrap();
    assert!(
        matches!(err, ImageError::Truncated { size: 100, .. }),
        "{err}"
    );
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
        text.replace("\"format_version\": 1", "\"format_version\": 9"),
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
fn run_outside_the_pages_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let w = ImageWriter::create(dir.path()).unwrap();
    let bogus = PageRun {
        vma_offset: 0,
        len: 4096,
        data_offset: 1 << 40,
        digest: "0".repeat(64),
    };
    w.finish(sample(vec![bogus])).unwrap();
    let err = Image::open(dir.path()).err().unwrap().to_string();
    assert!(err.contains("outside the pages file"), "{err}");
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
    let runs = &img.manifest.processes[0].vmas[0].runs;
    img.read_run(&runs[0], &mut Vec::new()).unwrap();
    // A second complete checkpoint replaces it and removes the old pages.
    write_sample(dir.path());
    let files: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("pages-"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
}

#[test]
fn threads_must_start_with_the_leader_and_be_distinct() {
    let mut m = sample(vec![]);
    m.pages.file = "pages-1-77.img".into();
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
