#!/usr/bin/env python3
"""No import cycle inside a crate: the modules of each crate (and the
submodules of each folder) form a graph by their `crate::`/`super::` paths
outside comments and tests; this fails (exit 1) on any strongly connected
group of two or more modules. `make lint` runs it."""
import re,os,glob,sys
def graph(root, prefix):
    g={}
    for f in glob.glob(root+'/**/*.rs', recursive=True):
        rel=os.path.relpath(f,root)
        mod=rel.split('/')[0].replace('.rs','')
        if mod in('lib','main'): continue
        txt=open(f).read().split('#[cfg(test)]')[0]
        txt='\n'.join(l for l in txt.split('\n') if not l.strip().startswith('//'))
        deps=set(re.findall(prefix+r'(\w+)',txt))
        g.setdefault(mod,set()).update(d for d in deps if d!=mod and d!='self')
    return g
def scc(g):
    index={};low={};st=[];on=set();out=[];i=[0]
    def sc(v):
        index[v]=low[v]=i[0];i[0]+=1;st.append(v);on.add(v)
        for w in g.get(v,()):
            if w not in g: continue
            if w not in index: sc(w);low[v]=min(low[v],low[w])
            elif w in on: low[v]=min(low[v],index[w])
        if low[v]==index[v]:
            c=[]
            while True:
                w=st.pop();on.discard(w);c.append(w)
                if w==v:break
            if len(c)>1: out.append(c)
    for v in g:
        if v not in index: sc(v)
    return out
bad=0
for root,prefix in [('crates/cli/src','crate::'),('crates/callbacks/src','crate::'),('crates/core/src','crate::'),('crates/models/src','crate::')]:
    c=scc(graph(root,prefix)); print(root,c); bad+=len(c)
for sub in glob.glob('crates/*/src/**/', recursive=True):
    c=scc(graph(sub.rstrip('/'),'super::'))
    if c: print(sub,c); bad+=len(c)
sys.exit(1 if bad else 0)
