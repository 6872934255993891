// rayvino's loader shim: runs an OVMS custom loader library's C++ object for the C API in
// loader_shim.h. Every method call is wrapped so that no exception leaves this file.
#include "loader_shim.h"

#include <cxxabi.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <typeinfo>
#include <vector>

#include "custom_loader_interface.hpp"

using ovms::CustomLoaderInterface;
using ovms::CustomLoaderStatus;

struct RvLoader {
    CustomLoaderInterface* object;
};

struct RvModel {
    std::vector<uint8_t> model;
    std::vector<uint8_t> weights;
};

namespace {

void say(char* message, size_t size, const std::string& text) {
    if (message == nullptr || size == 0)
        return;
    std::snprintf(message, size, "%s", text.c_str());
}

// The type of the exception being handled, demangled ("std::runtime_error").
std::string current_exception_type() {
    const std::type_info* type = abi::__cxa_current_exception_type();
    if (type == nullptr)
        return "unknown exception";
    int status = 0;
    char* readable = abi::__cxa_demangle(type->name(), nullptr, nullptr, &status);
    std::string name = status == 0 && readable != nullptr ? readable : type->name();
    std::free(readable);
    return name;
}

// Runs `call` (returning a CustomLoaderStatus); a throw becomes RV_THREW with the type and what().
template <typename Call>
int guarded(RvLoader* loader, char* message, size_t size, Call call) {
    if (loader == nullptr || loader->object == nullptr) {
        say(message, size, "the loader object was already deleted");
        return RV_CLOSED;
    }
    try {
        return static_cast<int>(call(loader->object));
    } catch (const std::exception& error) {
        say(message, size, current_exception_type() + ": " + error.what());
    } catch (...) {
        say(message, size, current_exception_type() + " (not derived from std::exception)");
    }
    return RV_THREW;
}

std::string text(const char* data, size_t size) { return data == nullptr ? std::string() : std::string(data, size); }

// The vtable slot a pointer to a virtual member function names (Itanium C++ ABI: 1 + the
// slot's byte offset).
template <typename Method>
int slot_of(Method method) {
    static_assert(sizeof(Method) == 2 * sizeof(std::ptrdiff_t), "an Itanium pointer to member function");
    std::ptrdiff_t words[2];
    std::memcpy(words, &method, sizeof(words));
    return static_cast<int>((words[0] - 1) / static_cast<std::ptrdiff_t>(sizeof(void*)));
}

}  // namespace

extern "C" {

int rv_open(const char* library_path, RvLoader** loader, char* message, size_t message_size) {
    *loader = nullptr;
    // As OVMS: RTLD_LOCAL keeps the loader's symbols out of every other library's way; the
    // handle is never closed, since the library's code may still run from threads it started.
    void* handle = dlopen(library_path, RTLD_LAZY | RTLD_LOCAL);
    if (handle == nullptr) {
        const char* why = dlerror();
        say(message, message_size, why != nullptr ? why : "dlopen failed");
        return RV_OPEN_FAILED;
    }
    dlerror();
    auto create = reinterpret_cast<ovms::createCustomLoader_t*>(dlsym(handle, "createCustomLoader"));
    if (create == nullptr) {
        say(message, message_size, "the library does not export createCustomLoader");
        return RV_SYMBOL_MISSING;
    }
    CustomLoaderInterface* object = nullptr;
    try {
        object = create();
    } catch (const std::exception& error) {
        say(message, message_size, "createCustomLoader threw " + current_exception_type() + ": " + error.what());
        return RV_CREATE_FAILED;
    } catch (...) {
        say(message, message_size, "createCustomLoader threw " + current_exception_type());
        return RV_CREATE_FAILED;
    }
    if (object == nullptr) {
        say(message, message_size, "createCustomLoader returned NULL");
        return RV_CREATE_FAILED;
    }
    *loader = new RvLoader{object};
    return 0;
}

int rv_loader_init(RvLoader* loader, const char* config_file, size_t config_file_size, char* message,
                   size_t message_size) {
    std::string file = text(config_file, config_file_size);
    return guarded(loader, message, message_size, [&](CustomLoaderInterface* object) { return object->loaderInit(file); });
}

int rv_load_model(RvLoader* loader, const char* name, size_t name_size, const char* base_path,
                  size_t base_path_size, int version, const char* options, size_t options_size, RvModel** model,
                  char* message, size_t message_size) {
    *model = nullptr;
    RvModel* filled = new RvModel();
    std::string model_name = text(name, name_size), path = text(base_path, base_path_size);
    std::string loader_options = text(options, options_size);
    int status = guarded(loader, message, message_size, [&](CustomLoaderInterface* object) {
        return object->loadModel(model_name, path, version, loader_options, filled->model, filled->weights);
    });
    *model = filled;  // whatever the status: the caller frees it once
    return status;
}

const uint8_t* rv_model_buffer(const RvModel* model, int weights, size_t* size) {
    const std::vector<uint8_t>& buffer = weights ? model->weights : model->model;
    *size = buffer.size();
    return buffer.data();
}

void rv_model_free(RvModel* model) { delete model; }

int rv_blacklist_status(RvLoader* loader, const char* name, size_t name_size, int version, char* message,
                        size_t message_size) {
    std::string model_name = text(name, name_size);
    return guarded(loader, message, message_size, [&](CustomLoaderInterface* object) {
        return object->getModelBlacklistStatus(model_name, version);
    });
}

int rv_unload_model(RvLoader* loader, const char* name, size_t name_size, int version, char* message,
                    size_t message_size) {
    std::string model_name = text(name, name_size);
    return guarded(loader, message, message_size,
                   [&](CustomLoaderInterface* object) { return object->unloadModel(model_name, version); });
}

int rv_retire_model(RvLoader* loader, const char* name, size_t name_size, char* message, size_t message_size) {
    std::string model_name = text(name, name_size);
    return guarded(loader, message, message_size,
                   [&](CustomLoaderInterface* object) { return object->retireModel(model_name); });
}

int rv_loader_deinit(RvLoader* loader, char* message, size_t message_size) {
    return guarded(loader, message, message_size, [](CustomLoaderInterface* object) { return object->loaderDeInit(); });
}

int rv_close(RvLoader* loader, char* message, size_t message_size) {
    if (loader == nullptr)
        return 0;
    int status = guarded(loader, message, message_size, [](CustomLoaderInterface* object) {
        delete object;
        return CustomLoaderStatus::OK;
    });
    if (status == RV_CLOSED)
        status = 0;  // closing twice is harmless
    loader->object = nullptr;
    delete loader;
    return status;
}

int rv_vtable_slots(int* slots, int count) {
    const int found[] = {
        slot_of(&CustomLoaderInterface::loaderInit),    slot_of(&CustomLoaderInterface::loadModel),
        slot_of(&CustomLoaderInterface::getModelBlacklistStatus), slot_of(&CustomLoaderInterface::unloadModel),
        slot_of(&CustomLoaderInterface::retireModel),   slot_of(&CustomLoaderInterface::loaderDeInit),
    };
    int written = 0;
    for (; written < count && written < static_cast<int>(sizeof(found) / sizeof(found[0])); ++written)
        slots[written] = found[written];
    return written;
}

size_t rv_interface_size(void) { return sizeof(CustomLoaderInterface); }

}  // extern "C"
