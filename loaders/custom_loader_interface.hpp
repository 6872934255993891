/*
 * rayvino custom loader interface.
 *
 * Binary-compatible with OpenVINO Model Server's src/customloaderinterface.hpp: the same
 * namespace, the same status values and the same virtual methods in the same order, so a loader
 * library compiled against OVMS's header runs here unchanged, and the other way round. Build a
 * loader with g++ (libstdc++, the default std::string ABI):
 *
 *     g++ -std=c++17 -O2 -shared -fPIC -I<rayvino>/loaders my_loader.cpp -o libmyloader.so
 *
 * and export `extern "C" ovms::CustomLoaderInterface* createCustomLoader()` returning `new`.
 *
 * Contract, as in OVMS:
 *  - loaderInit runs once per loader_name; its return value is ignored, an exception refuses
 *    the loader (CUSTOM_LOADER_INIT_FAILED);
 *  - loadModel fills modelBuffer (IR: the xml text; ONNX: the model) and weights (IR: the .bin;
 *    ONNX: empty) and returns MODEL_TYPE_IR or MODEL_TYPE_ONNX; MODEL_LOAD_ERROR, MODEL_BLACKLISTED
 *    or INTERNAL_ERROR leave the version LOADING/UNKNOWN, retried at every poll;
 *  - getModelBlacklistStatus: anything but OK blacklists the version (it is unloaded, END);
 *  - the object is deleted through the virtual destructor after loaderDeInit; the library is
 *    never unloaded.
 * Exceptions from any method are caught by the server and reported with their what().
 */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ovms {

enum class CustomLoaderStatus {
    OK,
    MODEL_TYPE_IR,
    MODEL_TYPE_ONNX,
    MODEL_TYPE_BLOB,
    MODEL_LOAD_ERROR,
    MODEL_BLACKLISTED,
    INTERNAL_ERROR
};

// The declaration order of these virtual methods is the vtable layout loaders are compiled against.
class CustomLoaderInterface {
public:
    CustomLoaderInterface() {}
    virtual ~CustomLoaderInterface() {}

    virtual CustomLoaderStatus loaderInit(const std::string& loaderConfigFile) = 0;

    virtual CustomLoaderStatus loadModel(const std::string& modelName, const std::string& basePath, const int version,
                                         const std::string& loaderOptions, std::vector<uint8_t>& modelBuffer,
                                         std::vector<uint8_t>& weights) = 0;

    virtual CustomLoaderStatus getModelBlacklistStatus(const std::string& modelName, const int version) {
        return CustomLoaderStatus::OK;
    }

    virtual CustomLoaderStatus unloadModel(const std::string& modelName, const int version) = 0;

    virtual CustomLoaderStatus retireModel(const std::string& modelName) = 0;

    virtual CustomLoaderStatus loaderDeInit() = 0;
};

typedef CustomLoaderInterface* createCustomLoader_t();

}  // namespace ovms
