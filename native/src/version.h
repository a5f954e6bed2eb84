// version.h — HQ_VERSION, the trainer's version string as reported by `hqlora-train --version`, the addon, the
// start event, checkpoints, adapter metadata and export reports. CMake defines it from the project version
// (native/CMakeLists.txt); a build that does not gets "0.0.0".
#pragma once

#ifndef HQ_VERSION
#define HQ_VERSION "0.0.0"
#endif
