// fsutil.cpp — POSIX implementation of the crash-safe file primitives (see fsutil.h).
#include "fsutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "error.h"

namespace hq {

namespace {

[[noreturn]] void io_fail(const std::string& what, const std::string& path, int err, const std::string& hint) {
    throw Error("E_IO", HQ_MSG(what << " '" << path << "': " << std::strerror(err)), Where{path, "", "", -1, -1},
                hint.empty() ? "check that the path exists, is writable and that the disk is not full" : hint);
}

// write(2) until done, retrying EINTR.
void write_all(int fd, const char* p, size_t n, const std::string& path) {
    while (n > 0) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            io_fail("cannot write", path, errno, "");
        }
        p += w;
        n -= size_t(w);
    }
}

std::atomic<uint64_t> g_tmp_counter{0};

}  // namespace

std::string path_join(const std::string& a, const std::string& b) {
    if (a.empty()) return b;
    if (!b.empty() && b[0] == '/') return b;
    if (a.back() == '/') return a + b;
    return a + "/" + b;
}

std::string parent_dir(const std::string& path) {
    std::string p = path;
    while (p.size() > 1 && p.back() == '/') p.pop_back();
    size_t k = p.rfind('/');
    if (k == std::string::npos) return ".";
    if (k == 0) return "/";
    return p.substr(0, k);
}

std::string base_name(const std::string& path) {
    std::string p = path;
    while (p.size() > 1 && p.back() == '/') p.pop_back();
    size_t k = p.rfind('/');
    return k == std::string::npos ? p : p.substr(k + 1);
}

std::string temp_sibling(const std::string& final_path) {
    return path_join(parent_dir(final_path), HQ_MSG(".tmp-" << base_name(final_path) << "-" << ::getpid() << "-"
                                                            << g_tmp_counter.fetch_add(1)));
}

void fsync_dir(const std::string& dir) {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) io_fail("cannot open directory for fsync", dir, errno, "");
    int rc = ::fsync(fd);
    int err = errno;
    ::close(fd);
    // Some filesystems refuse fsync on directories (EINVAL); there is nothing more durable we can do there.
    if (rc != 0 && err != EINVAL && err != EROFS) io_fail("cannot fsync directory", dir, err, "");
}

void fsync_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) io_fail("cannot open for fsync", path, errno, "");
    int rc = ::fsync(fd);
    int err = errno;
    ::close(fd);
    if (rc != 0 && err != EINVAL) io_fail("cannot fsync", path, err, "");
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
    std::string tmp = temp_sibling(path);
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        io_fail("cannot create temp file for", path, errno,
                "check that the folder exists and is writable (a temp file is created next to the target)");
    try {
        write_all(fd, bytes.data(), bytes.size(), path);
        if (::fsync(fd) != 0) io_fail("cannot fsync", path, errno, "");
    } catch (...) {
        ::close(fd);
        ::unlink(tmp.c_str());
        throw;
    }
    if (::close(fd) != 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        io_fail("cannot close", path, err, "");
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        io_fail("cannot rename temp file onto", path, err, "");
    }
    fsync_dir(parent_dir(path));
}

void rename_atomic(const std::string& from, const std::string& to) {
    if (::rename(from.c_str(), to.c_str()) != 0)
        io_fail(HQ_MSG("cannot rename '" << from << "' to"), to, errno,
                "both paths must be on the same filesystem and the target must not be a non-empty folder");
    fsync_dir(parent_dir(to));
}

std::string read_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) io_fail("cannot open", path, errno, "check that the file exists and is readable");
    std::string out;
    struct stat st;
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) out.reserve(size_t(st.st_size));
    char buf[1 << 16];
    for (;;) {
        ssize_t r = ::read(fd, buf, sizeof buf);
        if (r < 0) {
            if (errno == EINTR) continue;
            int err = errno;
            ::close(fd);
            io_fail("cannot read", path, err, "check that the path is a readable file");
        }
        if (r == 0) break;
        out.append(buf, size_t(r));
    }
    ::close(fd);
    return out;
}

bool path_exists(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
}

bool is_directory(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

uint64_t file_size(const std::string& path) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) io_fail("cannot stat", path, errno, "check that the file exists");
    return uint64_t(st.st_size);
}

void make_dirs(const std::string& path) {
    if (path.empty() || is_directory(path)) return;
    std::string parent = parent_dir(path);
    if (parent != path && !parent.empty()) make_dirs(parent);
    if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) io_fail("cannot create directory", path, errno, "");
    if (!is_directory(path)) io_fail("not a directory", path, ENOTDIR, "remove the file that is in the way");
}

void remove_all(const std::string& path) {
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) return;
        io_fail("cannot stat", path, errno, "");
    }
    if (S_ISDIR(st.st_mode)) {
        for (const auto& name : list_dir(path)) remove_all(path_join(path, name));
        if (::rmdir(path.c_str()) != 0 && errno != ENOENT) io_fail("cannot remove directory", path, errno, "");
    } else {
        if (::unlink(path.c_str()) != 0 && errno != ENOENT) io_fail("cannot remove", path, errno, "");
    }
}

std::vector<std::string> list_dir(const std::string& dir) {
    DIR* d = ::opendir(dir.c_str());
    if (!d) io_fail("cannot list directory", dir, errno, "check that the folder exists and is readable");
    std::vector<std::string> out;
    while (struct dirent* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n != "." && n != "..") out.push_back(n);
    }
    ::closedir(d);
    std::sort(out.begin(), out.end());
    return out;
}

void publish_dir(const std::string& tmp_dir, const std::string& final_dir) {
    for (const auto& name : list_dir(tmp_dir)) {
        std::string p = path_join(tmp_dir, name);
        if (!is_directory(p)) fsync_file(p);
    }
    fsync_dir(tmp_dir);
    // rename(2) cannot replace a non-empty folder: move the old one aside first, so a crash between the two renames
    // leaves a complete old (".tmp-*", ignored by readers) and a complete new folder, never a partial one.
    std::string old;
    if (path_exists(final_dir)) {
        old = temp_sibling(final_dir) + ".old";
        rename_atomic(final_dir, old);
    }
    try {
        rename_atomic(tmp_dir, final_dir);
    } catch (...) {
        if (!old.empty()) ::rename(old.c_str(), final_dir.c_str());  // best effort restore
        throw;
    }
    if (!old.empty()) remove_all(old);
}

void write_dir_atomic(const std::string& dir, const std::function<void(const std::string& tmp)>& fill) {
    make_dirs(parent_dir(dir));
    const std::string tmp = temp_sibling(dir);
    try {
        make_dirs(tmp);
        fill(tmp);
        publish_dir(tmp, dir);
    } catch (...) {
        try {
            remove_all(tmp);
        } catch (...) {
        }
        throw;
    }
}

}  // namespace hq
